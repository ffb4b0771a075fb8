//! The REPL driven through a pseudo-terminal: multi-line input, completion, Ctrl-C, history.
use std::process::Command;
use std::time::Duration;

use expectrl::{ControlCode, Expect, Session};

use crate::util::BIN;

const PROMPT: &str = "labhost> ";

fn spawn(home: &std::path::Path) -> expectrl::session::OsSession {
    let mut c = Command::new(BIN);
    c.arg("repl")
        .env("NO_COLOR", "1")
        .env("LABHOST_HOME", home)
        .env("TERM", "xterm")
        .current_dir(home);
    let mut s = Session::spawn(c).expect("spawn repl");
    s.set_expect_timeout(Some(Duration::from_secs(20)));
    s.expect(PROMPT).unwrap();
    s
}

#[test]
fn variables_persist_and_multi_line_input_continues() {
    let t = tempfile::tempdir().unwrap();
    let mut s = spawn(t.path());
    s.send_line("let x = 40;").unwrap();
    s.expect(PROMPT).unwrap();
    s.send_line("x + 2").unwrap();
    s.expect("=> 42").unwrap();
    s.expect(PROMPT).unwrap();
    // An unfinished function definition continues on the next line.
    s.send_line("fn double(a) {").unwrap();
    s.send_line("  a * 2").unwrap();
    // (A marker after the definition: the prompt alone also appears in line redraws.)
    s.send_line("} print(\"def\" + \"ined\");").unwrap();
    s.expect("defined").unwrap();
    s.expect(PROMPT).unwrap();
    s.send_line("double(x)").unwrap();
    s.expect("=> 80").unwrap();
    s.expect(PROMPT).unwrap();
    s.send_line(":vars").unwrap();
    s.expect("let x: i64 = 40").unwrap();
    s.expect(PROMPT).unwrap();
    s.send_line(":quit").unwrap();
    s.expect(expectrl::Eof).unwrap();
}

#[test]
fn tab_completes_modules_functions_and_variables() {
    let t = tempfile::tempdir().unwrap();
    let mut s = spawn(t.path());
    s.send_line("let learning_rate = 0.5;").unwrap();
    s.expect(PROMPT).unwrap();
    // Unique completions are inserted in place.
    s.send("print(learni\t").unwrap();
    s.send(" * 2.0)\r").unwrap();
    s.expect("1.0").unwrap();
    s.expect(PROMPT).unwrap();
    s.send("fs::exi\t").unwrap();
    s.send("(\"nope\")\r").unwrap();
    s.expect("=> false").unwrap();
    s.expect(PROMPT).unwrap();
    s.send("js\t").unwrap();
    s.send("dump([1])\r").unwrap();
    s.expect("=> \"[1]\"").unwrap();
    s.expect(PROMPT).unwrap();
    s.send(ControlCode::EndOfTransmission).unwrap();
    s.expect(expectrl::Eof).unwrap();
}

#[test]
fn ctrl_c_cancels_the_running_statement_and_keeps_the_session() {
    let t = tempfile::tempdir().unwrap();
    let mut s = spawn(t.path());
    s.send_line("let kept = 7;").unwrap();
    s.expect(PROMPT).unwrap();
    s.send_line("print(\"looping\"); loop { }").unwrap();
    s.expect("looping").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.send(ControlCode::EndOfText).unwrap();
    s.expect("interrupted").unwrap();
    s.expect(PROMPT).unwrap();
    s.send_line("kept").unwrap();
    s.expect("=> 7").unwrap();
    s.expect(PROMPT).unwrap();
    // Ctrl-C at the prompt just clears the line.
    s.send("half typed").unwrap();
    s.expect("half typed").unwrap();
    s.send(ControlCode::EndOfText).unwrap();
    s.expect("^C").unwrap();
    s.expect(PROMPT).unwrap();
    s.send(ControlCode::EndOfTransmission).unwrap();
    s.expect(expectrl::Eof).unwrap();
}

#[test]
fn history_is_saved_in_the_state_dir_and_recalled() {
    let t = tempfile::tempdir().unwrap();
    let mut s = spawn(t.path());
    s.send_line("let remembered = 123; print(\"s\" + \"et\");")
        .unwrap();
    s.expect("set").unwrap();
    s.expect(PROMPT).unwrap();
    s.send(ControlCode::EndOfTransmission).unwrap();
    s.expect(expectrl::Eof).unwrap();
    let hist = std::fs::read_to_string(t.path().join("repl_history")).unwrap();
    assert!(hist.contains("let remembered = 123;"), "{hist}");
    // A new session recalls it with the Up arrow.
    let mut s = spawn(t.path());
    s.send("\x1b[A").unwrap();
    s.send("\r").unwrap();
    s.expect("set").unwrap();
    s.expect(PROMPT).unwrap();
    s.send_line("remembered + 1").unwrap();
    s.expect("=> 124").unwrap();
    s.expect(PROMPT).unwrap();
    s.send(ControlCode::EndOfTransmission).unwrap();
    s.expect(expectrl::Eof).unwrap();
}

#[test]
fn errors_are_reported_and_the_session_goes_on() {
    let t = tempfile::tempdir().unwrap();
    let mut s = spawn(t.path());
    s.send_line("fs::read(\"missing.txt\")").unwrap();
    s.expect("error[fs.not_found]").unwrap();
    s.expect(PROMPT).unwrap();
    s.send_line(":functions fs").unwrap();
    s.expect("fs::read(path: &str) -> String").unwrap();
    s.expect(PROMPT).unwrap();
    s.send_line("1 + 1").unwrap();
    s.expect("=> 2").unwrap();
    s.expect(PROMPT).unwrap();
    s.send(ControlCode::EndOfTransmission).unwrap();
    s.expect(expectrl::Eof).unwrap();
}
