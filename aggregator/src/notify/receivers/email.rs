//! `email_configs`: email over SMTP with lettre. Implicit TLS (TLS from the
//! first byte, RFC 8314) when `force_implicit_tls` is true, or when it is
//! unset and the port is 465 (Alertmanager's rule); otherwise STARTTLS,
//! required when `require_tls` is true (the default, as Alertmanager) and
//! used when offered otherwise. AUTH PLAIN or
//! LOGIN when `auth_username` is set. The body is multipart/alternative:
//! plain text and HTML, one entry per alert with its runbook link.
//!
//! `html` and `text` may be set to templates (`crate::alert::template`,
//! `$labels` = the group's common labels, `$value` = firing alerts); an
//! empty one leaves that part out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Mailboxes, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::format::{AlertLines, plain_text, title};
use super::{
    Context, GlobalConfig, Secret, SendError, Sent, alerts_to_send, check_timeout, secret_value,
};
use crate::alert::{Alert, LabelSet, template};
use crate::notify::Notification;

/// The integration's name in outbox rows and metrics.
pub const KIND: &str = "email";

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// One `email_configs` entry; unset SMTP settings come from `global.smtp_*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Recipients, comma-separated.
    pub to: String,
    /// Sender address (else `global.smtp_from`).
    #[serde(default)]
    pub from: Option<String>,
    /// SMTP server `host:port` (else `global.smtp_smarthost`).
    #[serde(default)]
    pub smarthost: Option<String>,
    /// EHLO name (else `global.smtp_hello`, else `localhost`).
    #[serde(default)]
    pub hello: Option<String>,
    /// SMTP AUTH user name; no AUTH when unset here and in `global:`.
    #[serde(default)]
    pub auth_username: Option<String>,
    /// SMTP AUTH password.
    #[serde(default)]
    pub auth_password: Option<Secret>,
    /// A file holding the SMTP AUTH password (read on every send).
    #[serde(default)]
    pub auth_password_file: Option<PathBuf>,
    /// Require STARTTLS (else `global.smtp_require_tls`, else true).
    #[serde(default)]
    pub require_tls: Option<bool>,
    /// Implicit TLS: true always, false never (STARTTLS even on port 465);
    /// unset (else `global.smtp_force_implicit_tls`): on port 465 only.
    #[serde(default)]
    pub force_implicit_tls: Option<bool>,
    /// TLS settings (STARTTLS and implicit TLS).
    #[serde(default)]
    pub tls_config: Option<EmailTlsConfig>,
    /// Extra or overriding headers (`Subject`, `Reply-To`, ...).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Template of the HTML part (default: a table of the alerts).
    #[serde(default)]
    pub html: Option<String>,
    /// Template of the plain-text part (default: one entry per alert).
    #[serde(default)]
    pub text: Option<String>,
    /// Also notify when alerts resolve (default false, as Alertmanager).
    #[serde(default)]
    pub send_resolved: bool,
    /// Timeout of each SMTP command and of the whole send (default 30s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// `email_configs[].tls_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTlsConfig {
    /// A PEM file of CA certificates trusted besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the smarthost's host).
    #[serde(default)]
    pub server_name: Option<String>,
}

/// `host:port` split; the port is required (as Alertmanager).
pub fn parse_smarthost(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} has no port (want host:port)"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{s:?}: bad port {port:?}"))?;
    Ok((host.to_string(), port))
}

impl EmailConfig {
    pub fn validate(&self, global: Option<&GlobalConfig>) -> Vec<String> {
        let mut errors = Vec::new();
        if self.to.trim().is_empty() {
            errors.push("to: no recipient".to_string());
        } else if let Err(e) = Mailboxes::from_str(&self.to) {
            errors.push(format!("to: {e}"));
        }
        if let Some(from) = &self.from
            && let Err(e) = Mailbox::from_str(from)
        {
            errors.push(format!("from: {e}"));
        }
        if let Some(h) = &self.smarthost
            && let Err(e) = parse_smarthost(h)
        {
            errors.push(format!("smarthost: {e}"));
        }
        if self.auth_password.is_some() && self.auth_password_file.is_some() {
            errors.push("at most one of auth_password and auth_password_file".into());
        }
        for name in self.headers.keys() {
            if HeaderName::new_from_ascii(name.clone()).is_err() {
                errors.push(format!("headers: {name:?} is not a header name"));
            }
        }
        if let Err(e) = check_timeout(self.timeout) {
            errors.push(e);
        }
        if let Some(g) = global {
            if self.smarthost.is_none() && g.smtp_smarthost.is_none() {
                errors.push("no smarthost here or in global.smtp_smarthost".into());
            }
            if self.from.is_none() && !self.headers.contains_key("From") {
                match &g.smtp_from {
                    None => errors.push("no from here or in global.smtp_from".into()),
                    Some(f) if Mailbox::from_str(f).is_err() => {
                        errors.push(format!("global.smtp_from {f:?} is not an address"))
                    }
                    Some(_) => {}
                }
            }
        }
        errors
    }

    pub async fn send(&self, n: &Notification, ctx: &Context<'_>) -> Result<Sent, SendError> {
        let alerts = alerts_to_send(n, self.send_resolved);
        if alerts.is_empty() {
            return Ok(Sent::Skipped);
        }
        let message = self.message(n, &alerts, ctx)?;
        let transport = self.transport(ctx.global)?;
        match tokio::time::timeout(self.timeout, transport.send(message)).await {
            Err(_) => Err(SendError::Retryable("SMTP: timed out".into())),
            Ok(Ok(_)) => Ok(Sent::Delivered),
            Ok(Err(e)) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP: {e}"))),
            Ok(Err(e)) => Err(SendError::Retryable(format!("SMTP: {e}"))),
        }
    }

    fn transport(&self, g: &GlobalConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
        let permanent = |e: String| SendError::Permanent(e);
        let smarthost = self
            .smarthost
            .as_ref()
            .or(g.smtp_smarthost.as_ref())
            .ok_or_else(|| permanent("no smarthost configured".into()))?;
        let (host, port) = parse_smarthost(smarthost).map_err(permanent)?;
        let hello = self
            .hello
            .clone()
            .or_else(|| g.smtp_hello.clone())
            .unwrap_or_else(|| "localhost".into());
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
            .port(port)
            .timeout(Some(self.timeout))
            .hello_name(ClientId::Domain(hello));
        vigil_common::tls::install_default_provider();
        let tls = self.tls_parameters(&host)?;
        let require_tls = self.require_tls.or(g.smtp_require_tls).unwrap_or(true);
        let implicit = self
            .force_implicit_tls
            .or(g.smtp_force_implicit_tls)
            .unwrap_or(port == 465);
        builder = builder.tls(if implicit {
            Tls::Wrapper(tls)
        } else if require_tls {
            Tls::Required(tls)
        } else {
            Tls::Opportunistic(tls)
        });
        let user = self
            .auth_username
            .as_ref()
            .or(g.smtp_auth_username.as_ref());
        if let Some(user) = user {
            let password = match secret_value(
                self.auth_password.as_ref(),
                self.auth_password_file.as_deref(),
            )? {
                Some(p) => Some(p),
                None => secret_value(
                    g.smtp_auth_password.as_ref(),
                    g.smtp_auth_password_file.as_deref(),
                )?,
            };
            let password = password.map(|p| p.expose().to_string()).unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(builder.build())
    }

    fn tls_parameters(&self, host: &str) -> Result<TlsParameters, SendError> {
        let tls = self.tls_config.clone().unwrap_or_default();
        let mut params =
            TlsParameters::builder(tls.server_name.clone().unwrap_or_else(|| host.to_string()));
        if let Some(path) = &tls.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                SendError::Retryable(format!("cannot read {}: {e}", path.display()))
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                SendError::Permanent(format!("{}: not a PEM certificate: {e}", path.display()))
            })?;
            params = params.add_root_certificate(cert);
        }
        params
            .build_rustls()
            .map_err(|e| SendError::Permanent(format!("TLS setup: {e}")))
    }

    fn message(
        &self,
        n: &Notification,
        alerts: &[&Alert],
        ctx: &Context<'_>,
    ) -> Result<Message, SendError> {
        let permanent = |e: String| SendError::Permanent(e);
        let from = self
            .from
            .as_ref()
            .or(self.headers.get("From"))
            .or(ctx.global.smtp_from.as_ref())
            .ok_or_else(|| permanent("no from address configured".into()))?;
        let from = Mailbox::from_str(from).map_err(|e| permanent(format!("from: {e}")))?;
        let to = Mailboxes::from_str(&self.to).map_err(|e| permanent(format!("to: {e}")))?;
        let mut builder = Message::builder()
            .from(from)
            .subject(title(n, alerts))
            .date_now();
        for mailbox in to {
            builder = builder.to(mailbox);
        }
        let firing = alerts.iter().filter(|a| !a.is_resolved()).count();
        let expand = |name: &str, text: &str| {
            let empty = LabelSet::new();
            let data = template::TemplateData {
                labels: &n.common_labels,
                value: firing as f64,
                external_labels: &empty,
                external_url: ctx.external_url,
            };
            template::expand_or_error(name, text, &data)
        };
        let text = self.text.as_deref().map_or_else(
            || plain_text(n, alerts, ctx.external_url),
            |t| expand("text", t),
        );
        let html = self.html.as_deref().map_or_else(
            || html_body(n, alerts, ctx.external_url),
            |t| expand("html", t),
        );
        let mut message = match (text.is_empty(), html.is_empty()) {
            (false, false) => builder.multipart(MultiPart::alternative_plain_html(text, html)),
            (true, false) => builder.singlepart(SinglePart::html(html)),
            _ => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text),
            ),
        }
        .map_err(|e| permanent(format!("cannot build the message: {e}")))?;
        for (name, value) in &self.headers {
            let name = HeaderName::new_from_ascii(name.clone())
                .map_err(|e| permanent(format!("header {name:?}: {e}")))?;
            message
                .headers_mut()
                .insert_raw(HeaderValue::new(name, value.clone()));
        }
        Ok(message)
    }
}

/// A small table per alert: status, headline, description, times, links.
fn html_body(n: &Notification, alerts: &[&Alert], external_url: &str) -> String {
    let e = html_escape;
    let mut out = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><h2>{}</h2>",
        e(&title(n, alerts))
    );
    for a in alerts {
        let l = AlertLines::of(a);
        let colour = if a.is_resolved() {
            "#2e7d32"
        } else {
            "#c62828"
        };
        out.push_str(&format!(
            "<div style=\"border-left:4px solid {colour};padding:4px 8px;margin:8px 0\">\
             <b>[{}] {}</b><br>",
            l.status.to_uppercase(),
            e(&l.headline())
        ));
        if let Some(d) = l.description {
            out.push_str(&format!("{}<br>", e(d)));
        }
        out.push_str(&format!("<small>{}</small><br>", e(&l.times())));
        if let Some(r) = l.runbook_url {
            out.push_str(&format!("<a href=\"{}\">Runbook</a> ", e(r)));
        }
        if !l.generator_url.is_empty() {
            out.push_str(&format!("<a href=\"{}\">Source</a>", e(l.generator_url)));
        }
        out.push_str("</div>");
    }
    if n.truncated_alerts > 0 {
        out.push_str(&format!("<p>… and {} more alerts</p>", n.truncated_alerts));
    }
    if !external_url.is_empty() {
        out.push_str(&format!(
            "<p><a href=\"{}\">Open Vigil</a></p>",
            e(external_url)
        ));
    }
    out.push_str("</body></html>");
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
