//! Running the `bftbench` binary from integration tests.

use std::path::Path;
use std::process::Command;

/// Runs `bftbench args` in `cwd`: exit status, stdout, stderr.
pub fn bftbench_in(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bftbench"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("bftbench runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
