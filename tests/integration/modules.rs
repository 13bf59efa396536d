//! The default-allowed modules behave exactly as in CPython 3.11.

use strictpy_types::Status;

use crate::run;

const PROGRAM: &str = include_str!("../fixtures/allowed_modules.py");
/// Produced by `python3 -I -S tests/fixtures/allowed_modules.py` with CPython 3.11.7.
const CPYTHON_OUTPUT: &str = include_str!("../fixtures/allowed_modules.expected");

#[test]
fn all_eight_allowed_modules_match_cpython() {
    let out = run(PROGRAM);
    assert_eq!(
        out.status,
        Status::Succeeded,
        "{:?}\n{}",
        out.error,
        out.stderr
    );
    assert_eq!(out.stdout, CPYTHON_OUTPUT);
}

#[test]
fn the_recorded_output_is_cpython_311s() {
    // Re-derive the fixture where CPython 3.11 is installed, so the expected
    // text cannot drift from what CPython really prints.
    let Ok(version) = std::process::Command::new("python3")
        .arg("--version")
        .output()
    else {
        eprintln!("python3 not found; relying on the recorded output");
        return;
    };
    if !String::from_utf8_lossy(&version.stdout).starts_with("Python 3.11") {
        eprintln!("python3 is not 3.11; relying on the recorded output");
        return;
    }
    let live = std::process::Command::new("python3")
        .args(["-I", "-S", "-c", PROGRAM])
        .output()
        .expect("python3 runs");
    assert_eq!(String::from_utf8_lossy(&live.stdout), CPYTHON_OUTPUT);
}
