//! Thin helpers around [`std::process::Command`].
//!
//! Every helper echoes the command line before running it, so a log of the
//! release gate shows exactly what was executed, and turns a failure into a
//! single-line reason that the caller can report.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Renders `cmd` roughly the way a person would type it in a shell,
/// including any environment variables set on it, e.g.
/// `RUSTDOCFLAGS="-D warnings" cargo doc --workspace`.
///
/// The program is shown by its file name only, so the absolute path of the
/// toolchain's `cargo` does not clutter the log.
pub fn display(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!(
                "{}={}",
                key.to_string_lossy(),
                quote(&value.to_string_lossy())
            ));
        }
    }
    let program = Path::new(cmd.get_program());
    let name = program
        .file_name()
        .unwrap_or(program.as_os_str())
        .to_string_lossy();
    parts.push(name.into_owned());
    parts.extend(cmd.get_args().map(|arg| quote(&arg.to_string_lossy())));
    parts.join(" ")
}

/// Quotes a word for display when it would otherwise be ambiguous.
fn quote(word: &str) -> String {
    let needs_quotes = word.is_empty()
        || word
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '*');
    if needs_quotes {
        format!("\"{}\"", word.replace('"', "\\\""))
    } else {
        word.to_owned()
    }
}

/// Prints the `$ command` echo line and flushes it before the child starts
/// writing to the same terminal.
fn announce(shown: &str) {
    println!("    $ {shown}");
    // A failed flush only affects the order of log lines; never fatal.
    let _ = io::stdout().flush();
}

/// Turns an exit status into `Ok(())` or a one-line failure reason.
fn check(shown: &str, status: ExitStatus) -> Result<(), String> {
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

/// Runs `cmd` with inherited standard streams and fails unless it exits
/// successfully.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = display(cmd);
    announce(&shown);
    let status = cmd
        .status()
        .map_err(|err| format!("could not start `{shown}`: {err}"))?;
    check(&shown, status)
}

/// Runs `cmd`, echoing its standard output line by line while handing each
/// line to `on_line`; standard error stays attached to the terminal.
///
/// Output is decoded lossily, so a test that prints invalid UTF-8 cannot
/// break the gate.
pub fn run_streaming(cmd: &mut Command, mut on_line: impl FnMut(&str)) -> Result<(), String> {
    let shown = display(cmd);
    announce(&shown);
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|err| format!("could not start `{shown}`: {err}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| format!("`{shown}` has no captured standard output"))?;
    let mut echo = io::stdout();
    for chunk in BufReader::new(stdout).split(b'\n') {
        let mut bytes = chunk.map_err(|err| format!("reading output of `{shown}`: {err}"))?;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let line = String::from_utf8_lossy(&bytes);
        // Echo failures (e.g. a closed pipe on our side) must not hide the
        // child's own result, so they are ignored here.
        let _ = writeln!(echo, "{line}");
        let _ = echo.flush();
        on_line(&line);
    }
    let status = child
        .wait()
        .map_err(|err| format!("waiting for `{shown}`: {err}"))?;
    check(&shown, status)
}

/// Runs `cmd` with standard error attached to the terminal and returns its
/// standard output (decoded lossily); fails unless it exits successfully.
pub fn run_capture(cmd: &mut Command) -> Result<String, String> {
    let shown = display(cmd);
    announce(&shown);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|err| format!("could not start `{shown}`: {err}"))?;
    let mut bytes = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_end(&mut bytes)
            .map_err(|err| format!("reading output of `{shown}`: {err}"))?;
    }
    let status = child
        .wait()
        .map_err(|err| format!("waiting for `{shown}`: {err}"))?;
    check(&shown, status)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Runs `cmd` with inherited output streams (standard input closed),
/// killing it when it has not exited after `timeout`. Returns how long it
/// ran.
///
/// Only the direct child is killed on a timeout, so `cmd` should be the
/// program itself rather than a wrapper such as `cargo run`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Duration, String> {
    let shown = display(cmd);
    announce(&shown);
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .spawn()
        .map_err(|err| format!("could not start `{shown}`: {err}"))?;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return check(&shown, status).map(|()| started.elapsed()),
            Ok(None) if started.elapsed() >= timeout => {
                // Best effort: the child may exit on its own meanwhile.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{shown}` did not finish within {}s and was killed",
                    timeout.as_secs()
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(err) => return Err(format!("waiting for `{shown}`: {err}")),
        }
    }
}

/// Runs `cmd` silently and reports whether it could be started and exited
/// successfully. Used to probe for optional tools.
pub fn probe(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_env_program_name_and_quoted_args() {
        let mut cmd = Command::new("/opt/toolchain/bin/cargo");
        cmd.env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--workspace", ""]);
        assert_eq!(
            display(&cmd),
            "RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace \"\""
        );
    }

    #[cfg(unix)]
    #[test]
    fn timeouts_kill_the_child_and_exit_codes_fail() {
        let quick = run_with_timeout(Command::new("true").arg(""), Duration::from_secs(10));
        assert!(quick.is_ok(), "{quick:?}");
        let failed = run_with_timeout(&mut Command::new("false"), Duration::from_secs(10));
        assert!(failed.is_err_and(|e| e.contains("failed")));
        let started = Instant::now();
        let slow = run_with_timeout(Command::new("sleep").arg("30"), Duration::from_millis(300));
        assert!(slow.is_err_and(|e| e.contains("did not finish within")));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[cfg(unix)]
    #[test]
    fn capture_returns_standard_output() {
        let out = run_capture(Command::new("echo").arg("hello"));
        assert_eq!(out.as_deref(), Ok("hello\n"));
        assert!(run_capture(&mut Command::new("false")).is_err());
    }

    #[test]
    fn quote_leaves_plain_words_alone() {
        assert_eq!(quote("--all"), "--all");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("say \"hi\""), "\"say \\\"hi\\\"\"");
    }
}
