// The code editor: CodeMirror 6 with Python highlighting, and the static
// check (`POST /v1/check`) run as the person types, its violations shown as
// lint diagnostics at their line and column.

import { python } from "@codemirror/lang-python";
import { forceLinting, linter, lintGutter, type Diagnostic } from "@codemirror/lint";
import type { Text } from "@codemirror/state";
import { EditorView, basicSetup } from "codemirror";
import { request, type CheckResponse, type Violation } from "./api";

/** How long typing must pause before the check runs. */
const CHECK_DELAY_MS = 400;

/** The editor and the hooks the page needs. */
export interface Editor {
  view: EditorView;
  code(): string;
  setCode(code: string): void;
  /** Runs the check now (after sign-in, or when `allow` changed). */
  recheck(): void;
}

/** Where a 1-based line and 1-based character column fall in the document. */
export function position(doc: Text, v: Violation): { from: number; to: number } {
  const lineNo = Math.min(Math.max(v.line, 1), doc.lines);
  const line = doc.line(lineNo);
  // Columns count characters (code points); CodeMirror counts UTF-16 units.
  let from = line.from;
  let chars = 1;
  for (const ch of line.text) {
    if (chars >= v.column) break;
    from += ch.length;
    chars += 1;
  }
  const to = from < line.to ? from + 1 : from;
  return { from, to };
}

/**
 * Mounts the editor in `parent`; `allow` gives the modules the check should
 * allow, `active` says whether there is a session to check with, `status`
 * hears the check's summary.
 */
export function mountEditor(
  parent: HTMLElement,
  initial: string,
  allow: () => string[],
  active: () => boolean,
  status: (text: string, ok: boolean | null) => void,
): Editor {
  const check = linter(
    async (view): Promise<Diagnostic[]> => {
      if (!active()) return [];
      const code = view.state.doc.toString();
      status("checking…", null);
      try {
        const answer = await request<CheckResponse>("POST", "/v1/check", { code, allow: allow() });
        // The document may have changed while the check ran; map by the
        // state the check saw.
        const doc = view.state.doc.toString() === code ? view.state.doc : null;
        if (doc === null) return [];
        const n = answer.violations.length;
        status(n === 0 ? "static check: ok" : `static check: ${n} violation${n === 1 ? "" : "s"}`, n === 0);
        return answer.violations.map((v) => ({
          ...position(doc, v),
          severity: "error",
          source: v.rule,
          message: v.message,
        }));
      } catch (e) {
        status(`static check unavailable: ${e instanceof Error ? e.message : String(e)}`, false);
        return [];
      }
    },
    { delay: CHECK_DELAY_MS },
  );
  // CodeMirror injects its styles at run time. In a document that takes a
  // <style> element, which the page's CSP (style-src 'self') refuses; in a
  // shadow root it uses a constructed stylesheet (adoptedStyleSheets), which
  // CSP allows. So the editor lives in a shadow root of its own, and its
  // look comes from `theme` rather than style.css.
  const shadow = parent.attachShadow({ mode: "open" });
  const mount = document.createElement("div");
  shadow.append(mount);
  const theme = EditorView.theme({
    "&": { height: "18rem", fontSize: "0.9rem", backgroundColor: "#fff" },
    ".cm-scroller": { fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace' },
  });
  const view = new EditorView({
    doc: initial,
    parent: mount,
    root: shadow,
    extensions: [basicSetup, python(), lintGutter(), check, EditorView.lineWrapping, theme],
  });
  return {
    view,
    code: () => view.state.doc.toString(),
    setCode: (code) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: code } }),
    recheck: () => forceLinting(view),
  };
}
