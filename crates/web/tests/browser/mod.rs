//! Debian's Chromium, headless, driven over the DevTools protocol through
//! `--remote-debugging-pipe`: commands go in on the browser's fd 3 and
//! answers come back on its fd 4, each a JSON text ended by a NUL byte.
//! One page (target) per browser; JavaScript dialogs are accepted, as a
//! person confirming would.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// How long a page may take to settle before a wait gives up: an upper
/// bound for a stuck page, not a measure of speed.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Browser {
    child: Child,
    commands: File,
    replies: Receiver<Value>,
    session: String,
    next_id: u64,
    screenshots: PathBuf,
    _profile: tempfile::TempDir,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a pipe for the browser")
}

impl Browser {
    /// Starts `chromium` headless; screenshots go to `screenshots`.
    pub fn start(screenshots: &Path) -> Browser {
        std::fs::create_dir_all(screenshots).expect("the screenshots folder");
        let profile = tempfile::tempdir().expect("a browser profile folder");
        // Browser's view: it reads commands from fd 3 and writes replies to fd 4.
        let (browser_reads, we_write) = pipe();
        let (we_read, browser_writes) = pipe();
        let (r, w) = (browser_reads.as_raw_fd(), browser_writes.as_raw_fd());
        let mut command = Command::new("chromium");
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-extensions",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--mute-audio",
                "--remote-debugging-pipe",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that its helpers go with it.
            .process_group(0);
        // SAFETY: between fork and exec only async-signal-safe calls (fcntl,
        // dup2) on descriptors that stay open in the parent until spawn returns.
        unsafe {
            command.pre_exec(move || {
                // Moved above 10 first, so neither dup2 can clobber the other's source.
                let r = libc::fcntl(r, libc::F_DUPFD, 10);
                let w = libc::fcntl(w, libc::F_DUPFD, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .expect("starting chromium (scripts/test.sh installs Debian's chromium)");
        drop((browser_reads, browser_writes));

        let (tx, replies) = mpsc::channel();
        let reader = File::from(we_read);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if buf.last() == Some(&0) {
                            buf.pop();
                        }
                        if let Ok(message) = serde_json::from_slice::<Value>(&buf) {
                            if tx.send(message).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });

        let mut browser = Browser {
            child,
            commands: File::from(we_write),
            replies,
            session: String::new(),
            next_id: 0,
            screenshots: screenshots.to_path_buf(),
            _profile: profile,
        };
        browser.new_tab();
        browser
    }

    /// Opens a new tab and makes it the one commands go to; returns the
    /// tab that was in use before (for [`Browser::use_tab`]).
    pub fn new_tab(&mut self) -> String {
        let target = self.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = self.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        let session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        let previous = std::mem::replace(&mut self.session, session);
        self.call("Page.enable", json!({}));
        self.call("Runtime.enable", json!({}));
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        );
        previous
    }

    /// Sends commands to `tab` from now on (brought to the front); returns
    /// the tab that was in use before.
    pub fn use_tab(&mut self, tab: String) -> String {
        let previous = std::mem::replace(&mut self.session, tab);
        self.call("Page.bringToFront", json!({}));
        previous
    }

    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> u64 {
        self.next_id += 1;
        let mut message = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .expect("writing to the browser");
        self.next_id
    }

    fn wait_reply(&mut self, id: u64, method: &str) -> Value {
        self.reply(id, method)
            .unwrap_or_else(|error| panic!("{method} failed: {error}"))
    }

    /// The answer to command `id`, or the error the browser gave.
    fn reply(&mut self, id: u64, method: &str) -> Result<Value, Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = match self.replies.recv_timeout(left) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => panic!("the browser did not answer {method}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the browser went away during {method}")
                }
            };
            if message["method"] == "Page.javascriptDialogOpening" {
                let session = message["sessionId"].as_str().map(str::to_owned);
                self.send(
                    "Page.handleJavaScriptDialog",
                    json!({"accept": true}),
                    session.as_deref(),
                );
                continue;
            }
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    return Err(error.clone());
                }
                return Ok(message["result"].clone());
            }
        }
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params, None);
        self.wait_reply(id, method)
    }

    /// A DevTools command on the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        let id = self.send(method, params, Some(&session));
        self.wait_reply(id, method)
    }

    /// Evaluates a JavaScript expression in the page; its value as JSON.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = result.get("exceptionDetails") {
            panic!("`{expression}` threw: {e}");
        }
        result["result"]["value"].clone()
    }

    pub fn text(&mut self, selector: &str) -> String {
        self.eval(&format!(
            "(document.querySelector({s}) || {{innerText: ''}}).innerText",
            s = json!(selector)
        ))
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    pub fn texts(&mut self, selector: &str) -> Vec<String> {
        let v = self.eval(&format!(
            "[...document.querySelectorAll({s})].map(e => e.innerText)",
            s = json!(selector)
        ));
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Evaluates `expression` unless the page is between two documents (a
    /// navigation under way closes the context it would run in): then None.
    fn eval_between_pages(&mut self, expression: &str) -> Option<Value> {
        let session = self.session.clone();
        let id = self.send(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            Some(&session),
        );
        match self.reply(id, "Runtime.evaluate") {
            Ok(result) => {
                if let Some(e) = result.get("exceptionDetails") {
                    panic!("`{expression}` threw: {e}");
                }
                Some(result["result"]["value"].clone())
            }
            Err(error) => {
                let message = error["message"].as_str().unwrap_or_default();
                let navigating = [
                    "Inspected target navigated or closed",
                    "Execution context was destroyed",
                    "Cannot find context with specified id",
                ]
                .iter()
                .any(|m| message.contains(m));
                if navigating {
                    None
                } else {
                    panic!("Runtime.evaluate failed: {error}")
                }
            }
        }
    }

    /// Waits until `expression` is true in the page; `what` says what was
    /// awaited. A page still navigating is a page not there yet.
    pub fn wait_for(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.eval_between_pages(&format!("!!({expression})")) == Some(json!(true)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.screenshot(&format!("failed-{}", what.replace(' ', "-")));
        let page = self.eval("document.body ? document.body.innerText : ''");
        panic!(
            "waited in vain for {what} (`{expression}`); the page said:\n{}",
            page.as_str().unwrap_or("")
        );
    }

    /// Runs `action` (a click, a navigation) and waits for the new document.
    pub fn load_after(&mut self, action: &str) {
        self.eval("window.__rehearse_old_page = true");
        self.eval(&format!("setTimeout(() => {{ {action} }}, 0)"));
        self.wait_for(
            "the next page",
            "!window.__rehearse_old_page && document.readyState === 'complete'",
        );
    }

    /// Goes to `url` as typing it into the address bar does.
    pub fn open(&mut self, url: &str) {
        self.eval("window.__rehearse_old_page = true");
        let nav = self.call("Page.navigate", json!({"url": url}));
        if let Some(e) = nav.get("errorText") {
            panic!("opening {url}: {e}");
        }
        self.wait_for(
            "the page",
            "!window.__rehearse_old_page && document.readyState === 'complete'",
        );
    }

    /// Clicks the element `selector` names and waits for the page it leads to.
    pub fn click_to_page(&mut self, selector: &str) {
        let exists = self.eval(&format!("!!document.querySelector({})", json!(selector)));
        assert_eq!(
            exists,
            json!(true),
            "nothing on the page matches {selector}"
        );
        self.load_after(&format!(
            "document.querySelector({}).click()",
            json!(selector)
        ));
    }

    /// Saves the whole page as `<name>.png` and prints where.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        let height = self
            .eval("Math.ceil(Math.max(document.documentElement.scrollHeight, 900))")
            .as_u64()
            .unwrap_or(900)
            .min(8000);
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("writing the screenshot");
        println!("screenshot: {}", path.display());
        path
    }

    /// The browser's process group id (its helpers are in it too).
    pub fn pgid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Ends the browser and asserts none of its processes is left.
    pub fn close(self) {
        let group = self.pgid();
        drop(self);
        let deadline = Instant::now() + WAIT;
        loop {
            let left = group_members(group);
            if left.is_empty() {
                return;
            }
            // Killed helpers linger until their new parent reaps them.
            assert!(
                Instant::now() < deadline,
                "browser processes left behind: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pgid()),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

/// Processes still in a process group.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so count from ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) {
            // Zombies are gone but for their parent's wait.
            if fields.first() != Some(&"Z") {
                pids.push(pid);
            }
        }
    }
    pids
}
