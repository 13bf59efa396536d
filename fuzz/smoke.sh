#!/usr/bin/env bash
# Runs EVERY fuzz target in fuzz/fuzz_targets/ for a short while (30 s each by
# default), one after the other, and exits non-zero if libFuzzer finds a crash,
# hang or out-of-memory input in any of them.
#
# Usage: fuzz/smoke.sh [SECONDS] [TARGET...]   (no TARGET: all of them)
#
# Seeds: the files in fuzz/seeds/<target>/ when that directory exists; the
# analyzer's target `check` starts from the Python files in fuzz/seeds/ itself.
# New inputs go to fuzz/corpus/<target>/ (ignored by git).
#
# It works on a stable toolchain, and around two snags:
# - cargo-fuzz passes `-Zsanitizer=address` and other unstable flags, so the
#   build runs with RUSTC_BOOTSTRAP=1, which lets stable rustc accept them (the
#   stable toolchain ships the sanitizer runtimes).
# - The pinned parser crates declare rust-version 1.96 but build on 1.95, and
#   `cargo fuzz build` has no way to pass `--ignore-rust-version` on. cargo-fuzz
#   runs whatever `cargo` is first on PATH, so a small shim put there adds the
#   flag to the `cargo build` and `cargo run` it calls.
# - Built with debug assertions (as cargo-fuzz does by default), the parser uses
#   `debug_assert_matches!`, which is only stable from 1.96; on 1.95 the
#   (bootstrapped) feature is switched on for every crate with -Zcrate-attr.
set -euo pipefail

seconds="${1:-30}"
shift || true
fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(dirname "$fuzz_dir")"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "smoke.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

real_cargo="$(command -v cargo)"
shim_dir="$(mktemp -d)"
trap 'rm -rf "$shim_dir"' EXIT
cat > "$shim_dir/cargo" <<SHIM
#!/usr/bin/env bash
case "\${1:-}" in
    build | run)
        subcommand="\$1"
        shift
        exec "$real_cargo" "\$subcommand" --ignore-rust-version "\$@"
        ;;
esac
exec "$real_cargo" "\$@"
SHIM
chmod +x "$shim_dir/cargo"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for file in "$fuzz_dir"/fuzz_targets/*.rs; do
        targets+=("$(basename "$file" .rs)")
    done
fi

cd "$repo_dir"
for target in "${targets[@]}"; do
    mkdir -p "$fuzz_dir/corpus/$target"
    seeds=()
    if [ -d "$fuzz_dir/seeds/$target" ]; then
        seeds+=("$fuzz_dir/seeds/$target")
    elif [ "$target" = check ]; then
        # The analyzer's seeds predate per-target directories: only the files
        # directly in seeds/, not the other targets' subdirectories.
        mkdir -p "$fuzz_dir/corpus/check-seeds"
        find "$fuzz_dir/seeds" -maxdepth 1 -type f -exec cp {} "$fuzz_dir/corpus/check-seeds/" \;
        seeds+=("$fuzz_dir/corpus/check-seeds")
    fi
    echo "smoke.sh: fuzzing $target for ${seconds}s" >&2
    # -rss_limit_mb: the worst 1 MiB inputs to the analyzer build trees of a few
    # hundred MB. -max_len: long enough for trees past the compiler's depth
    # limit; the size bombs are covered by the unit tests.
    PATH="$shim_dir:$PATH" RUSTC_BOOTSTRAP=1 \
        RUSTFLAGS="${RUSTFLAGS:-} -Zcrate-attr=feature(assert_matches)" \
        cargo fuzz run --fuzz-dir "$fuzz_dir" "$target" "$fuzz_dir/corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=16384 -timeout=20 \
        -print_final_stats=1
done
