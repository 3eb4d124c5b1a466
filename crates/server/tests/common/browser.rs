//! A browser of one person for the portal tests: its own cookie jar (reads `Set-Cookie`, sends
//! `Cookie`), never following redirects, so every answer is seen as a browser would get it.

use std::collections::HashMap;
use std::time::Duration;

use super::Server;

/// One answer: status, the `Set-Cookie` lines, the body.
pub struct Answer {
    pub status: u16,
    pub set_cookies: Vec<String>,
    pub location: Option<String>,
    pub body: String,
}

/// A browser of one person: its own cookie jar.
pub struct Browser {
    pub root: String,
    pub agent: ureq::Agent,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn new(server: &Server) -> Browser {
        Browser {
            root: server.root(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into(),
            cookies: HashMap::new(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn answer(
        &mut self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Answer {
        let mut response = response.expect("HTTP");
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for line in &set_cookies {
            let (pair, attributes) = line.split_once(';').unwrap_or((line, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        Answer {
            status: response.status().as_u16(),
            set_cookies,
            location,
            body: response.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    pub fn get(&mut self, path: &str) -> Answer {
        let mut request = self.agent.get(format!("{}{path}", self.root));
        if !self.cookies.is_empty() {
            request = request.header("Cookie", &self.cookie_header());
        }
        let response = request.call();
        self.answer(response)
    }

    /// Status, lower-cased headers, body.
    pub fn get_raw(&mut self, path: &str) -> (u16, HashMap<String, String>, String) {
        let mut request = self.agent.get(format!("{}{path}", self.root));
        if !self.cookies.is_empty() {
            request = request.header("Cookie", &self.cookie_header());
        }
        let mut response = request.call().expect("HTTP");
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_lowercase(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let status = response.status().as_u16();
        (
            status,
            headers,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = form
            .iter()
            .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = self
            .agent
            .post(format!("{}{path}", self.root))
            .content_type("application/x-www-form-urlencoded");
        if !self.cookies.is_empty() {
            request = request.header("Cookie", &self.cookie_header());
        }
        let response = request.send(body);
        self.answer(response)
    }

    /// Opens the sign-in page and sends it filled in; answers the answer to the POST.
    pub fn sign_in(&mut self, login: &str, password: &str, code: &str) -> Answer {
        let form = self.get("/portal/sign-in");
        assert_eq!(form.status, 200);
        let csrf = hidden_csrf(&form.body);
        self.post(
            "/portal/sign-in",
            &[
                ("csrf", &csrf),
                ("login", login),
                ("password", password),
                ("code", code),
            ],
        )
    }
}

pub fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The value of the form's hidden `name` field.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// The value of the form's hidden `csrf` field.
pub fn hidden_csrf(html: &str) -> String {
    hidden(html, "csrf")
}
