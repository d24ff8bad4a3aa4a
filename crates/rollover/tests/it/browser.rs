//! Pages in a real browser: headless Chromium, driven over WebDriver by
//! chromedriver (Debian packages `chromium` and `chromium-driver`, installed
//! by `.ci/run`). Layout is something only a browser can check.


use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::network::{Scratch, free_port};
use serde_json::{Value, json};
use crate::server::{Backend, Server};

/// One browser session, ended (and chromedriver stopped) when dropped.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: Scratch,
}

impl Browser {
    /// Chromium at a phone's width: 412 by 915 CSS pixels.
    fn phone() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (Debian package chromium-driver; .ci/run installs it)");
        let base = format!("http://127.0.0.1:{port}");
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into();
        let started = Instant::now();
        while agent.get(format!("{base}/status")).call().is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = Scratch::new("chromium-profile");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.0.display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": args,
            // A desktop window cannot be this narrow; an emulated phone can.
            "mobileEmulation": {"deviceMetrics": {"width": 412, "height": 915, "pixelRatio": 2.625}},
        }}}});
        let mut browser = Browser { driver, base, session: String::new(), agent, _profile: profile };
        let created = browser.call("POST", "/session", &capabilities);
        browser.session = created["sessionId"].as_str().unwrap_or_else(|| panic!("no browser session: {created}")).to_string();
        browser
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let url = format!("{}{path}", self.base);
        let mut response = match method {
            "POST" => self.agent.post(&url).header("content-type", "application/json").send(body.to_string()),
            _ => self.agent.delete(&url).call(),
        }
        .expect("chromedriver answers");
        let text = response.body_mut().read_to_string().expect("a body");
        let reply: Value = serde_json::from_str(&text).expect("WebDriver answers JSON");
        reply["value"].clone()
    }

    fn open(&self, url: &str) {
        let reply = self.call("POST", &format!("/session/{}/url", self.session), &json!({"url": url}));
        assert!(reply.is_null(), "navigation failed: {reply}");
    }

    /// Runs `script` (a function body) in the page; its return value.
    fn run(&self, script: &str) -> Value {
        self.call("POST", &format!("/session/{}/execute/sync", self.session), &json!({"script": script, "args": []}))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.agent.delete(format!("{}/session/{}", self.base, self.session)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `/docs` on a phone: every operation listed, endpoints before schemas,
/// and nothing wider than the screen.
#[test]
fn the_api_docs_read_well_on_a_phone() {
    let server = Server::start(Backend::Sqlite);
    let browser = Browser::phone();
    browser.open(&format!("{}/docs", server.base));
    let page = browser.run(
        "const headings = [...document.querySelectorAll('h2')].map(h => h.textContent);
         const operations = [...document.querySelectorAll('h3 .method')].map(m => m.parentElement.textContent);
         const wide = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.tagName + ' ' + e.textContent.slice(0, 40));
         return {title: document.title, width: window.innerWidth, scroll: document.documentElement.scrollWidth, headings, operations, wide};",
    );
    assert_eq!(page["title"], "rollover API", "{page}");
    assert_eq!(page["width"], 412, "the phone's width: {page}");
    assert!(page["scroll"].as_u64().unwrap() <= 412, "the page scrolls sideways at 412 px: {}", page["wide"]);
    assert_eq!(page["headings"], json!(["Endpoints", "Schemas"]), "the API comes first");
    // Every operation the OpenAPI document describes is on the page.
    let spec = server.get("/openapi.json").body;
    let mut expected = Vec::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            expected.push(format!("{method} {path}"));
        }
    }
    let shown: Vec<String> = page["operations"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_string()).collect();
    for operation in &expected {
        assert!(shown.contains(operation), "{operation} is missing from /docs: {shown:?}");
    }
}
