//! Report builder custom reports (`core_reportbuilder_*`). Moodle core has no web-service function
//! that lists the role assignments of a user context; the "Roles" report source is the only read
//! path, so the bot reads parent links through a custom report an administrator builds once (see
//! the README, Parents). Shapes as the lab answers them (Moodle 5.0dev, build 20241007):
//! `set_filters` answers `true`; `retrieve_report` answers `{details, data: {headers, rows:
//! [{columns: [..]}], totalrowcount}, warnings}`, each column a formatted string (links are HTML).

use super::{Form, MoodleClient, MoodleError};
use serde::Deserialize;

/// The report's id in `reportbuilder_report` (the number in `reportbuilder/view.php?id=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportId(i64);

impl ReportId {
    pub fn new(id: i64) -> Option<ReportId> {
        (id > 0).then_some(ReportId(id))
    }
    pub fn get(self) -> i64 {
        self.0
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReportRow {
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReportData {
    pub headers: Vec<String>,
    pub rows: Vec<ReportRow>,
    pub totalrowcount: u64,
}

#[derive(Deserialize)]
struct Retrieved {
    data: ReportData,
}

/// The calling account's filter values for the report (Moodle keeps them per user, as a
/// preference: two callers with one token share them, see `bot::children`).
pub async fn set_filters(
    client: &MoodleClient,
    report: ReportId,
    values: &serde_json::Value,
) -> Result<(), MoodleError> {
    let mut form = Form::new();
    form.push("reportid", report.0);
    form.push("values", values.to_string());
    let ok: bool = client.call("core_reportbuilder_set_filters", &form).await?;
    if ok {
        Ok(())
    } else {
        Err(MoodleError::Protocol(
            "core_reportbuilder_set_filters answered false".into(),
        ))
    }
}

/// One page of the report, with the caller's current filter values applied.
pub async fn retrieve(
    client: &MoodleClient,
    report: ReportId,
    page: u32,
    per_page: u32,
) -> Result<ReportData, MoodleError> {
    let mut form = Form::new();
    form.push("reportid", report.0);
    form.push("page", page);
    form.push("perpage", per_page);
    let r: Retrieved = client
        .call("core_reportbuilder_retrieve_report", &form)
        .await?;
    Ok(r.data)
}

/// A link column (`<a href="URL">text</a>`, as `html_writer::link` writes it): the URL and the
/// text, entities decoded. None for anything else.
pub fn parse_link(html: &str) -> Option<(url::Url, String)> {
    let rest = html.trim().strip_prefix("<a href=\"")?;
    let (href, rest) = rest.split_once('"')?;
    let (_, rest) = rest.split_once('>')?;
    let text = rest.strip_suffix("</a>")?;
    if text.contains('<') {
        return None;
    }
    let url = url::Url::parse(&decode_entities(href)).ok()?;
    Some((url, decode_entities(text)))
}

/// The entities `s()` / `htmlspecialchars` write.
fn decode_entities(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#039;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_as_the_lab_writes_them() {
        let (u, text) = parse_link(
            "<a href=\"http://127.0.0.1:8089/moodle/user/profile.php?id=7\">User: Léa Martin</a>",
        )
        .unwrap();
        assert_eq!(u.path(), "/moodle/user/profile.php");
        assert_eq!(u.query(), Some("id=7"));
        assert_eq!(text, "User: Léa Martin");
        let (u, text) =
            parse_link("<a href=\"https://m.example/user/view.php?id=3&amp;course=1\">O&#039;Connor &amp; fils</a>")
                .unwrap();
        assert_eq!(u.query(), Some("id=3&course=1"));
        assert_eq!(text, "O'Connor & fils");
        assert!(parse_link("Paul Probe").is_none());
        assert!(parse_link("<a href=\"x\">a<b>c</b></a>").is_none());
    }
}
