//! A real browser for the console's tests: Debian's chromium, headless, driven through
//! chromedriver over WebDriver (fantoccini). chromedriver picks a free loopback port and prints
//! it; the browser gets a profile of its own, no proxy, the workspace hosts (under
//! `.localhost`, which resolves to loopback anyway), and accepts the workspace CA's certificate
//! (a test CA it cannot know). Screenshots go to `target/console-screenshots/` (CI artifacts).
//! Missing chromium or chromedriver is a loud failure ([`super::require`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use super::daemon::Daemon;

/// Bound of every wait for the page (a loaded CI machine).
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Browser {
    pub client: Client,
    _driver: Daemon,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    /// Where downloads land.
    pub downloads: PathBuf,
}

/// `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots")
}

impl Browser {
    /// Starts chromedriver and a headless chromium `width` pixels wide.
    pub async fn start(width: u32) -> Browser {
        super::require("chromium");
        super::require("chromedriver");
        let mut cmd = Command::new("chromedriver");
        cmd.arg("--port=0");
        super::scrub_proxy_env(&mut cmd);
        let driver = Daemon::spawn("chromedriver", cmd);
        driver.expect("started successfully on port ", WAIT);
        let log = driver.log();
        let port: u16 = log
            .split("started successfully on port ")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in chromedriver's output: {log}"));
        let profile = tempfile::tempdir().unwrap();
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let caps = serde_json::json!({
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-proxy-server",
                    "--no-first-run",
                    format!("--window-size={width},1000"),
                    format!("--user-data-dir={}", profile.path().join("chrome").display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.to_str().unwrap(),
                    "download.prompt_for_download": false,
                },
            },
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("chromedriver session: {e}\n{}", driver.log()));
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            client,
            _driver: driver,
            _profile: profile,
            shots,
            downloads,
        }
    }

    /// Saves a PNG of the page as `target/console-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Fills the sign-in form on the page (`/login`) with `user` and `password` and submits it.
    pub async fn sign_in(&self, user: &str, password: &str) {
        for (id, text) in [("username", user), ("password", password)] {
            self.client
                .find(Locator::Id(id))
                .await
                .unwrap_or_else(|e| panic!("no #{id} on the sign-in page: {e}"))
                .send_keys(text)
                .await
                .unwrap();
        }
        self.client
            .find(Locator::Css("form.login button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Waits for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} within {}s: {e}", WAIT.as_secs()))
    }

    /// The serious and critical accessibility violations axe-core finds on the page (each as
    /// `rule: help: elements`). axe-core comes from npm (`./test.sh` installs it under
    /// `target/npm`); missing, it is a loud failure.
    pub async fn axe(&self) -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/npm/node_modules/axe-core/axe.min.js");
        let src = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "axe-core is not installed at {} ({e}): run ./test.sh, or `npm install --prefix target/npm axe-core`",
                path.display()
            )
        });
        // WebDriver scripts are not subject to the page's Content-Security-Policy.
        self.client
            .execute(&format!("{src}\nreturn typeof axe;"), vec![])
            .await
            .expect("inject axe-core");
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] }).then(r => done(JSON.stringify(
                   r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.id + ': ' + v.help + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))
                 ))).catch(e => done(JSON.stringify(['axe failed: ' + e])));",
                vec![],
            )
            .await
            .expect("run axe-core");
        serde_json::from_str(found.as_str().unwrap_or("[]")).unwrap_or_default()
    }

    /// Presses `key` (a WebDriver key, e.g. `"\u{e004}"` for Tab) on the focused element.
    pub async fn press(&self, key: &str) {
        let el = self
            .client
            .active_element()
            .await
            .expect("a focused element");
        el.send_keys(key).await.expect("send keys");
    }

    /// The page's current source, for failure messages.
    pub async fn source(&self) -> String {
        self.client.source().await.unwrap_or_default()
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
