//! Shared by the end-to-end tests: starting a real `skiff server` process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Start `skiff server` on `dir` and wait for its ready line.
pub fn spawn(dir: &std::path::Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "server",
            "--secure-port",
            "0",
            "--bind-address",
            "127.0.0.1",
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start skiff");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains("skiff is ready"),
        "unexpected first line: {line}"
    );
    child
}
