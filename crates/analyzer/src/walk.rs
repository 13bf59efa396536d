//! The semantic rules (`forbidden_import`, `forbidden_builtin`, `forbidden_attribute`,
//! and `too_deeply_nested` for deep syntax trees), and the safe disposal of the tree.
//!
//! The tree can be far deeper than its brackets suggest: `"-" * 300000 + "1"` is a
//! chain of 300,000 unary operators, and `a+a+...` a chain of binary ones. Walking it
//! recursively, or even dropping it (`Drop` of a `Box<Expr>` recurses), could
//! overflow any stack. So nothing here recurses on the depth of the tree:
//!
//! - The rules are applied by an iterative walk over references: a `Visitor` whose
//!   `visit_*` methods push the child onto an explicit work list instead of
//!   recursing, so `ruff_python_ast`'s `walk_*` functions (which know every field
//!   that holds a child) only ever go one level down. It also measures the depth
//!   the way the guest's compiler does.
//! - A tree deeper than the compiler accepts (or one the parser built while
//!   recovering from errors, which is not walked) is taken apart the same way
//!   before it is dropped: a `Transformer` moves each child out onto a work list,
//!   leaving a leaf behind, so every node is shallow when it is dropped. A tree of
//!   bounded depth is simply dropped.
//!
//! (The RustPython fork's `runtime_*` fields are not visited, but the parser always
//! leaves them `None`.)

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeSet;

use ruff_python_ast::visitor::transformer::{self, Transformer};
use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{self as ast, Expr, Pattern, Stmt, Suite};
use ruff_text_size::Ranged;
use strictpy_types::{Policy, Verdict};

use crate::{Finding, nfkc};

/// How deep a syntax tree may be, counting statements, expressions and patterns.
///
/// This is the guest compiler's own limit: `too_deeply_nested_error` in
/// rustpython-compiler 0.6.0 refuses a tree deeper than `CompileOpts::recursion_limit`,
/// which the VM sets from its recursion limit, 1000 in release builds
/// (rustpython-vm 0.6.0, `vm/mod.rs`). A deeper program could never run, so
/// refusing it here takes nothing away.
pub(crate) const MAX_TREE_DEPTH: u32 = 1000;

/// Calls that take an attribute name as a string: `getattr(obj, "name")` and friends.
const NAME_IN_SECOND_ARGUMENT: &[&str] = &["getattr", "setattr", "delattr", "hasattr"];

/// Calls whose first or second argument may be an attribute name:
/// `obj.__getattribute__("name")`, `object.__getattribute__(obj, "name")`,
/// `operator.methodcaller("name")`.
const NAME_IN_FIRST_TWO_ARGUMENTS: &[&str] = &[
    "__getattribute__",
    "__getattr__",
    "__setattr__",
    "__delattr__",
    "methodcaller",
];

/// `operator.attrgetter("a.b", "c")`: every argument is a dotted attribute path.
const DOTTED_NAMES_IN_ALL_ARGUMENTS: &[&str] = &["attrgetter"];

/// What the rules need from the caller.
pub(crate) struct Rules<'a> {
    /// The policy: forbidden names and attributes.
    policy: &'a Policy,
    /// The effective allowlist of top-level modules for this call.
    allowlist: &'a BTreeSet<String>,
    /// Every forbidden builtin and attribute, as a pre-test.
    maybe_forbidden: NameFilter,
}

impl<'a> Rules<'a> {
    /// The rules of `policy` with this call's `allowlist`.
    pub(crate) fn new(policy: &'a Policy, allowlist: &'a BTreeSet<String>) -> Self {
        let mut maybe_forbidden = NameFilter([0; FILTER_WORDS]);
        for name in policy
            .forbidden_builtins
            .iter()
            .chain(&policy.forbidden_attributes)
        {
            maybe_forbidden.insert(name);
        }
        Self {
            policy,
            allowlist,
            maybe_forbidden,
        }
    }

    /// Whether `name` (already NFKC-normalised) is a forbidden builtin.
    fn forbidden_builtin(&self, name: &str) -> bool {
        self.maybe_forbidden.may_contain(name) && self.policy.forbidden_builtins.contains(name)
    }

    /// Whether `name` (already NFKC-normalised) is a forbidden attribute.
    fn forbidden_attribute(&self, name: &str) -> bool {
        self.maybe_forbidden.may_contain(name) && self.policy.forbidden_attributes.contains(name)
    }
}

/// Words of [`NameFilter`]: 4096 bits.
const FILTER_WORDS: usize = 64;

/// A one-hash Bloom filter over a few hundred names. Nearly every name in a
/// program is neither a forbidden builtin nor a forbidden attribute, and the
/// sets' own lookups (string comparisons down a B-tree) were most of the
/// walk's time; a name whose bit is clear cannot be in either set, so the
/// exact lookup only runs for the few that may be. It only ever says "no"
/// when the answer is no, so the rules are unchanged.
struct NameFilter([u64; FILTER_WORDS]);

impl NameFilter {
    /// The bit of `name`: its length and its first two and last two bytes.
    fn bit(name: &str) -> usize {
        let b = name.as_bytes();
        let at = |i: usize| b.get(i).copied().map_or(0, usize::from);
        let from_end = |i: usize| b.len().checked_sub(i + 1).map_or(0, at);
        let mut h = b.len();
        for byte in [at(0), at(1), from_end(1), from_end(0)] {
            h = h.wrapping_mul(31).wrapping_add(byte);
        }
        (h.wrapping_mul(0x9E37_79B9) >> 7) & (FILTER_WORDS * 64 - 1)
    }

    /// Adds `name`.
    fn insert(&mut self, name: &str) {
        let bit = Self::bit(name);
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    /// False only when `name` was never inserted.
    fn may_contain(&self, name: &str) -> bool {
        let bit = Self::bit(name);
        self.0[bit / 64] & (1 << (bit % 64)) != 0
    }
}

/// Checks a parsed module body (with `rules`, or only disposes of it without),
/// then drops it without deep recursion.
pub(crate) fn check_tree(body: Suite, rules: Option<&Rules<'_>>, findings: &mut Vec<Finding>) {
    let too_deep = match rules {
        Some(rules) => {
            let too_deep = walk(&body, rules, findings);
            if let Some(offset) = too_deep {
                findings.push(Finding::unnamed(
                    Verdict::TooDeeplyNested,
                    offset,
                    format!(
                        "the syntax tree is nested more than {MAX_TREE_DEPTH} levels deep \
                         (more than the interpreter's compiler accepts)"
                    ),
                ));
            }
            too_deep.is_some()
        }
        // Not walked, so of unknown depth.
        None => true,
    };
    if too_deep {
        dismantle(body);
    }
    // Otherwise `body` is dropped here, recursing at most as deep as the tree,
    // which is bounded by `MAX_TREE_DEPTH` (times a small factor for the nodes
    // between two expressions, such as arguments and comprehensions).
}

/// A node waiting to be visited.
#[derive(Clone, Copy)]
enum NodeRef<'a> {
    /// A statement.
    Stmt(&'a Stmt),
    /// An expression.
    Expr(&'a Expr),
    /// A `match` pattern.
    Pattern(&'a Pattern),
}

/// A `Visitor` that queues each child it is shown instead of recursing into it.
struct Collector<'a> {
    /// The depth the children being queued will have.
    child_depth: u32,
    /// Nodes still to visit, with their depth (top-level statements are at 1).
    pending: Vec<(NodeRef<'a>, u32)>,
}

impl<'a> Visitor<'a> for Collector<'a> {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        self.pending.push((NodeRef::Stmt(stmt), self.child_depth));
    }

    fn visit_expr(&mut self, expr: &'a Expr) {
        self.pending.push((NodeRef::Expr(expr), self.child_depth));
    }

    fn visit_pattern(&mut self, pattern: &'a Pattern) {
        self.pending
            .push((NodeRef::Pattern(pattern), self.child_depth));
    }
}

/// Applies the rules to every node, iteratively. Returns the offset of the first
/// node (in source order) deeper than [`MAX_TREE_DEPTH`], if there is one.
fn walk(body: &Suite, rules: &Rules<'_>, findings: &mut Vec<Finding>) -> Option<usize> {
    let mut collector = Collector {
        child_depth: 1,
        pending: Vec::new(),
    };
    collector
        .pending
        .extend(body.iter().rev().map(|stmt| (NodeRef::Stmt(stmt), 1)));
    let mut too_deep: Option<usize> = None;
    while let Some((node, depth)) = collector.pending.pop() {
        if depth > MAX_TREE_DEPTH {
            let start = match node {
                NodeRef::Stmt(stmt) => stmt.start(),
                NodeRef::Expr(expr) => expr.start(),
                NodeRef::Pattern(pattern) => pattern.start(),
            }
            .to_usize();
            too_deep = Some(too_deep.map_or(start, |s| s.min(start)));
            // Nothing deeper can run either; its children need not be visited.
            continue;
        }
        collector.child_depth = depth + 1;
        match node {
            NodeRef::Stmt(stmt) => {
                rules.check_stmt(stmt, findings);
                visitor::walk_stmt(&mut collector, stmt);
            }
            NodeRef::Expr(expr) => {
                rules.check_expr(expr, findings);
                visitor::walk_expr(&mut collector, expr);
            }
            NodeRef::Pattern(pattern) => {
                rules.check_pattern(pattern, findings);
                visitor::walk_pattern(&mut collector, pattern);
            }
        }
    }
    too_deep
}

/// A node that has been detached from its parent and waits to be taken apart.
enum Node {
    /// A statement.
    Stmt(Stmt),
    /// An expression.
    Expr(Expr),
    /// A `match` pattern.
    Pattern(Pattern),
}

/// A `Transformer` that moves every child it is shown onto a work list.
struct Detacher {
    /// Detached nodes still to take apart.
    pending: RefCell<Vec<Node>>,
}

impl Transformer for Detacher {
    fn visit_stmt(&self, stmt: &mut Stmt) {
        let leaf = Stmt::Pass(ast::StmtPass {
            node_index: Default::default(),
            range: stmt.range(),
        });
        self.pending
            .borrow_mut()
            .push(Node::Stmt(std::mem::replace(stmt, leaf)));
    }

    fn visit_expr(&self, expr: &mut Expr) {
        let leaf = Expr::NoneLiteral(ast::ExprNoneLiteral {
            node_index: Default::default(),
            range: expr.range(),
        });
        self.pending
            .borrow_mut()
            .push(Node::Expr(std::mem::replace(expr, leaf)));
    }

    fn visit_pattern(&self, pattern: &mut Pattern) {
        let leaf = Pattern::MatchStar(ast::PatternMatchStar {
            node_index: Default::default(),
            range: pattern.range(),
            name: None,
        });
        self.pending
            .borrow_mut()
            .push(Node::Pattern(std::mem::replace(pattern, leaf)));
    }
}

/// Drops a tree of any depth without recursing on its depth.
fn dismantle(body: Suite) {
    let detacher = Detacher {
        pending: RefCell::new(body.into_iter().map(Node::Stmt).collect()),
    };
    loop {
        // The borrow ends with this statement, before the node is taken apart.
        let next = detacher.pending.borrow_mut().pop();
        let Some(mut node) = next else {
            break;
        };
        match &mut node {
            Node::Stmt(stmt) => transformer::walk_stmt(&detacher, stmt),
            Node::Expr(expr) => transformer::walk_expr(&detacher, expr),
            Node::Pattern(pattern) => transformer::walk_pattern(&detacher, pattern),
        }
        // `node` now only holds leaves, so dropping it here does not recurse.
    }
}

impl Rules<'_> {
    /// The statement rules: imports.
    fn check_stmt(&self, stmt: &Stmt, findings: &mut Vec<Finding>) {
        match stmt {
            Stmt::Import(import) => {
                for alias in &import.names {
                    self.check_module(&alias.name.id, alias.name.start().to_usize(), findings);
                }
            }
            Stmt::ImportFrom(import) => self.check_import_from(import, findings),
            _ => {}
        }
    }

    /// The pattern rules: keywords of class patterns read attributes.
    fn check_pattern(&self, pattern: &Pattern, findings: &mut Vec<Finding>) {
        let Pattern::MatchClass(class) = pattern else {
            return;
        };
        for keyword in &class.arguments.keywords {
            let attr = nfkc(&keyword.attr.id);
            if self.forbidden_attribute(attr.as_ref()) {
                findings.push(Finding::named(
                    Verdict::ForbiddenAttribute,
                    attr.as_ref(),
                    keyword.attr.start().to_usize(),
                    format!("the class pattern keyword `{attr}` reads a forbidden attribute"),
                ));
            }
        }
    }

    /// `import NAME` (or the module of `from NAME import ...`): the top-level
    /// package must be allowed; submodules of an allowed package are.
    fn check_module(&self, dotted: &str, offset: usize, findings: &mut Vec<Finding>) {
        let dotted = nfkc(dotted);
        let top = dotted.split('.').next().unwrap_or_default();
        if !self.allowlist.contains(top) {
            findings.push(Finding::named(
                Verdict::ForbiddenImport,
                dotted.as_ref(),
                offset,
                format!(
                    "importing `{dotted}` is not allowed: module `{top}` is not in the allowlist"
                ),
            ));
        }
    }

    /// `from MODULE import NAMES` and relative imports.
    fn check_import_from(&self, import: &ast::StmtImportFrom, findings: &mut Vec<Finding>) {
        let offset = import
            .module
            .as_ref()
            .map_or(import.start(), Ranged::start)
            .to_usize();
        let module = import.module.as_ref().map_or("", |m| m.id.as_str());
        if import.level > 0 {
            // User code is a single script: a relative import can only reach
            // outside the allowlist, whatever it names.
            let level = usize::try_from(import.level).unwrap_or(usize::MAX);
            let name = format!("{}{}", ".".repeat(level), nfkc(module));
            findings.push(Finding::named(
                Verdict::ForbiddenImport,
                name.clone(),
                offset,
                format!("relative import `{name}` is not allowed"),
            ));
        } else if module != "__future__" {
            self.check_module(module, offset, findings);
        }
        for alias in &import.names {
            let name = nfkc(&alias.name.id);
            if self.forbidden_attribute(name.as_ref()) {
                findings.push(Finding::named(
                    Verdict::ForbiddenAttribute,
                    name.as_ref(),
                    alias.name.start().to_usize(),
                    format!("importing the forbidden attribute `{name}` is not allowed"),
                ));
            }
        }
    }

    /// The expression rules.
    fn check_expr(&self, expr: &Expr, findings: &mut Vec<Finding>) {
        match expr {
            Expr::Name(name) => self.check_name(&name.id, name.start().to_usize(), findings),
            Expr::Attribute(attribute) => {
                let attr = nfkc(&attribute.attr.id);
                if self.forbidden_attribute(attr.as_ref()) {
                    findings.push(Finding::named(
                        Verdict::ForbiddenAttribute,
                        attr.as_ref(),
                        attribute.attr.start().to_usize(),
                        format!("access to the attribute `{attr}` is not allowed"),
                    ));
                }
            }
            Expr::Call(call) => self.check_reflective_call(call, findings),
            Expr::StringLiteral(literal) => {
                self.check_format_string(literal.value.to_str(), literal.start(), findings);
            }
            Expr::FString(fstring) => {
                for part in &fstring.value {
                    match part {
                        ast::FStringPart::Literal(literal) => {
                            self.check_format_string(&literal.value, literal.start(), findings);
                        }
                        ast::FStringPart::FString(fstring) => {
                            for literal in fstring.elements.literals() {
                                self.check_format_string(&literal.value, literal.start(), findings);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// A bare name: a forbidden builtin, or a forbidden dunder such as
    /// `__builtins__` (which reaches the same objects as the attribute would).
    fn check_name(&self, id: &str, offset: usize, findings: &mut Vec<Finding>) {
        let id = nfkc(id);
        if self.forbidden_builtin(id.as_ref()) {
            findings.push(Finding::named(
                Verdict::ForbiddenBuiltin,
                id.as_ref(),
                offset,
                format!("use of the builtin `{id}` is not allowed"),
            ));
        } else if is_dunder(&id) && self.forbidden_attribute(id.as_ref()) {
            findings.push(Finding::named(
                Verdict::ForbiddenAttribute,
                id.as_ref(),
                offset,
                format!("use of the name `{id}` is not allowed"),
            ));
        }
    }

    /// `getattr(x, "__globals__")` and the other calls that name an attribute
    /// with a string literal.
    fn check_reflective_call(&self, call: &ast::ExprCall, findings: &mut Vec<Finding>) {
        let callee = match call.func.as_ref() {
            Expr::Name(name) => nfkc(&name.id),
            Expr::Attribute(attribute) => nfkc(&attribute.attr.id),
            _ => return,
        };
        let callee = callee.as_ref();
        let args = &call.arguments.args;
        let (candidates, dotted): (&[Expr], bool) = if NAME_IN_SECOND_ARGUMENT.contains(&callee) {
            (args.get(1..2).unwrap_or_default(), false)
        } else if NAME_IN_FIRST_TWO_ARGUMENTS.contains(&callee) {
            (&args[..args.len().min(2)], false)
        } else if DOTTED_NAMES_IN_ALL_ARGUMENTS.contains(&callee) {
            (args, true)
        } else {
            return;
        };
        for arg in candidates {
            let Expr::StringLiteral(literal) = arg else {
                continue;
            };
            let text = literal.value.to_str();
            let parts: Box<dyn Iterator<Item = &str>> = if dotted {
                Box::new(text.split('.'))
            } else {
                Box::new(std::iter::once(text))
            };
            for part in parts {
                let part = nfkc(part);
                if self.forbidden_attribute(part.as_ref()) {
                    findings.push(Finding::named(
                        Verdict::ForbiddenAttribute,
                        part.as_ref(),
                        literal.start().to_usize(),
                        format!("`{callee}` names the forbidden attribute `{part}`"),
                    ));
                }
            }
        }
    }

    /// A string that `str.format` could use to read a forbidden attribute:
    /// `"{0.__globals__}".format(f)`. Any literal with such a field is refused,
    /// since the string may be formatted far from where it is written.
    fn check_format_string(
        &self,
        text: &str,
        start: ruff_text_size::TextSize,
        findings: &mut Vec<Finding>,
    ) {
        if !text.contains('{') {
            return;
        }
        for attr in format_field_attributes(text) {
            let attr: Cow<'_, str> = nfkc(attr);
            if self.forbidden_attribute(attr.as_ref()) {
                findings.push(Finding::named(
                    Verdict::ForbiddenAttribute,
                    attr.as_ref(),
                    start.to_usize(),
                    format!("the format string reads the forbidden attribute `{attr}`"),
                ));
            }
        }
    }
}

/// `__name__`-shaped.
fn is_dunder(name: &str) -> bool {
    name.len() > 4 && name.starts_with("__") && name.ends_with("__")
}

/// The attribute names in the replacement fields of a `str.format` template:
/// for `"{0.a[k].b!r:>{w.c}}"` that is `a`, `b` and `c`. Index keys (`[k]`) are not
/// attributes. Linear in the text.
fn format_field_attributes(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'{' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'{') {
            i += 2;
            continue;
        }
        // The field name runs to the first `}`, `!`, `:` or `{` (a nested field
        // in the spec is then found by the outer loop).
        i += 1;
        while i < bytes.len() && !matches!(bytes[i], b'}' | b'!' | b':' | b'{') {
            match bytes[i] {
                b'[' => {
                    while i < bytes.len() && !matches!(bytes[i], b']' | b'}') {
                        i += 1;
                    }
                }
                b'.' => {
                    let start = i + 1;
                    i = start;
                    while i < bytes.len()
                        && !matches!(bytes[i], b'.' | b'[' | b'}' | b'!' | b':' | b'{')
                    {
                        i += 1;
                    }
                    // `start..i` is delimited by ASCII bytes, so it is on char boundaries.
                    if let Some(name) = text.get(start..i) {
                        names.push(name);
                    }
                    continue;
                }
                _ => i += 1,
            }
        }
    }
    names
}
