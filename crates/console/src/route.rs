//! Which console page a path and method are. Pure.

/// A console page or action. Ids are as they came in the path (percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// `/`: to the sensors.
    Home,
    Asset(String),
    LoginForm,
    Login,
    Logout,
    Sensors,
    SensorsCsv,
    Sensor(String),
    /// `POST /sensors/{id}/revoke` (the form's `action` says revoke or decommission).
    Revoke(String),
    Suppress(String),
    Unsuppress(String),
    /// `/issues`: every issue of the workspace (filtered by the query).
    Issues,
    /// `/deploy`: bundle, access key, install command, allow-list.
    Deploy,
    /// `/deploy/bundle.json`: the enrollment bundle (admins).
    Bundle,
    /// `POST /deploy/access-key`: a new access key (admins, with a confirmation).
    RegenerateKey,
    /// `/events`: the latest events (filtered by the query).
    Events,
    /// `/events.ndjson`: the filtered events as NDJSON.
    EventsNdjson,
    /// `/settings`: thresholds, retention, targets, users and tokens.
    Settings,
    /// `POST /settings`: change the threshold or the retention (admins).
    SaveSettings,
    /// `POST /settings/test`: send a test event to every webhook and syslog target now (admins).
    TestTargets,
    /// A known path with another method: the methods it takes.
    WrongMethod(&'static str),
    NotFound,
}

impl Page {
    /// Whether the page changes something (a POST: needs a CSRF token, and an admin).
    pub fn acts(&self) -> bool {
        matches!(
            self,
            Page::Revoke(_)
                | Page::Suppress(_)
                | Page::Unsuppress(_)
                | Page::RegenerateKey
                | Page::SaveSettings
                | Page::TestTargets
        )
    }
}

fn id(s: &str) -> Option<String> {
    let d = percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()?
        .into_owned();
    (!d.is_empty() && d.len() <= 200 && !d.contains('/')).then_some(d)
}

/// The page `path` and `method` ask for.
pub fn page(path: &str, method: &str) -> Page {
    let get = method == "GET" || method == "HEAD";
    let post = method == "POST";
    if let Some(asset) = path.strip_prefix(crate::assets::PREFIX) {
        return if get {
            Page::Asset(asset.to_owned())
        } else {
            Page::WrongMethod("GET")
        };
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let one = |p: Page, ok: bool, allow| if ok { p } else { Page::WrongMethod(allow) };
    match parts.as_slice() {
        [""] => one(Page::Home, get, "GET"),
        ["login"] if get => Page::LoginForm,
        ["login"] => one(Page::Login, post, "GET, POST"),
        ["logout"] => one(Page::Logout, post, "POST"),
        ["sensors"] => one(Page::Sensors, get, "GET"),
        ["sensors.csv"] => one(Page::SensorsCsv, get, "GET"),
        ["issues"] => one(Page::Issues, get, "GET"),
        ["events"] => one(Page::Events, get, "GET"),
        ["events.ndjson"] => one(Page::EventsNdjson, get, "GET"),
        ["settings"] if get => Page::Settings,
        ["settings"] => one(Page::SaveSettings, post, "GET, POST"),
        ["settings", "test"] => one(Page::TestTargets, post, "POST"),
        ["deploy"] => one(Page::Deploy, get, "GET"),
        ["deploy", "bundle.json"] => one(Page::Bundle, get, "GET"),
        ["deploy", "access-key"] => one(Page::RegenerateKey, post, "POST"),
        ["sensors", s] => match id(s) {
            Some(s) => one(Page::Sensor(s), get, "GET"),
            None => Page::NotFound,
        },
        ["sensors", s, "revoke"] => match id(s) {
            Some(s) => one(Page::Revoke(s), post, "POST"),
            None => Page::NotFound,
        },
        ["issues", i, "suppress"] => match id(i) {
            Some(i) => one(Page::Suppress(i), post, "POST"),
            None => Page::NotFound,
        },
        ["issues", i, "unsuppress"] => match id(i) {
            Some(i) => one(Page::Unsuppress(i), post, "POST"),
            None => Page::NotFound,
        },
        _ => Page::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_methods_name_pages() {
        use Page::*;
        let cases: &[(&str, &str, Page)] = &[
            ("/", "GET", Home),
            ("/", "POST", WrongMethod("GET")),
            ("/static/console.css", "GET", Asset("console.css".into())),
            ("/static/console.css", "POST", WrongMethod("GET")),
            ("/login", "GET", LoginForm),
            ("/login", "POST", Login),
            ("/login", "PUT", WrongMethod("GET, POST")),
            ("/logout", "POST", Logout),
            ("/logout", "GET", WrongMethod("POST")),
            ("/sensors", "GET", Sensors),
            ("/sensors", "HEAD", Sensors),
            ("/sensors.csv", "GET", SensorsCsv),
            ("/sensors/s-1", "GET", Sensor("s-1".into())),
            ("/sensors/a%20b", "GET", Sensor("a b".into())),
            ("/sensors/a%2Fb", "GET", NotFound),
            ("/sensors/%FF", "GET", NotFound),
            ("/sensors/s-1", "POST", WrongMethod("GET")),
            ("/sensors/s-1/revoke", "POST", Revoke("s-1".into())),
            ("/sensors/s-1/revoke", "GET", WrongMethod("POST")),
            ("/issues/iss-1/suppress", "POST", Suppress("iss-1".into())),
            (
                "/issues/iss-1/unsuppress",
                "POST",
                Unsuppress("iss-1".into()),
            ),
            ("/issues/iss-1/suppress", "GET", WrongMethod("POST")),
            ("/issues", "GET", Issues),
            ("/events", "GET", Events),
            ("/events.ndjson", "GET", EventsNdjson),
            ("/settings", "GET", Settings),
            ("/settings", "POST", SaveSettings),
            ("/settings", "DELETE", WrongMethod("GET, POST")),
            ("/settings/test", "POST", TestTargets),
            ("/settings/test", "GET", WrongMethod("POST")),
            ("/deploy", "GET", Deploy),
            ("/deploy/bundle.json", "GET", Bundle),
            ("/deploy/access-key", "POST", RegenerateKey),
            ("/deploy/access-key", "GET", WrongMethod("POST")),
            ("/sensors/", "GET", NotFound),
            ("/nope", "GET", NotFound),
            ("/api/v1/admin/sensors", "GET", NotFound),
        ];
        for (path, method, want) in cases {
            assert_eq!(&page(path, method), want, "{method} {path}");
        }
        assert!(Revoke("x".into()).acts() && RegenerateKey.acts());
        assert!(!Sensors.acts() && !Login.acts() && !Bundle.acts());
    }
}
