//! LDIF export (RFC 2849) read as a stream: `attr: value`, `attr:: base64`, folded lines,
//! comments, `version:`. A change file (`changetype: modify` / `delete` / `modrdn`) is refused:
//! read as adds it would silently turn deletions and partial edits into wrong people.

use super::{file_selects, Entry, Query, ReadSummary, SourceError};
use crate::sync::filter::Filter;
use base64::Engine;
use std::io::BufRead;
use std::path::Path;
use tokio::sync::mpsc;

pub fn read(path: &Path, q: &Query, tx: &mpsc::Sender<Entry>) -> Result<ReadSummary, SourceError> {
    let ferr = |m: String| SourceError::File {
        path: path.display().to_string(),
        message: m,
    };
    let filter = Filter::parse(&q.filter).map_err(SourceError::Filter)?;
    let file = std::fs::File::open(path).map_err(|e| ferr(e.to_string()))?;
    let mut summary = ReadSummary {
        requests: 1,
        entries: 0,
    };
    let mut emit = |e: Entry| -> Result<(), SourceError> {
        if file_selects(&e, q, &filter) {
            summary.entries += 1;
            tx.blocking_send(e)
                .map_err(|_| ferr("read stopped by the consumer".into()))?;
        }
        Ok(())
    };
    let mut lines: Vec<String> = Vec::new();
    let flush = |lines: &mut Vec<String>,
                 emit: &mut dyn FnMut(Entry) -> Result<(), SourceError>|
     -> Result<(), SourceError> {
        if lines.is_empty() {
            return Ok(());
        }
        let rec = parse_record(lines).map_err(ferr)?;
        lines.clear();
        if let Some(e) = rec {
            emit(e)?;
        }
        Ok(())
    };
    let mut reader = std::io::BufReader::new(file);
    let mut raw = String::new();
    let mut n = 0usize;
    loop {
        raw.clear();
        let got = reader
            .read_line(&mut raw)
            .map_err(|e| ferr(format!("line {}: {e}", n + 1)))?;
        if got == 0 {
            break;
        }
        n += 1;
        // A copy cut short ends inside a line: its last record cannot be trusted, and reading
        // it as complete would make everyone after the cut look like they left.
        let Some(line) = raw.strip_suffix('\n') else {
            return Err(ferr(format!(
                "line {n}: the file ends in the middle of a line (truncated export?)"
            )));
        };
        let line = line.strip_suffix('\r').unwrap_or(line).to_string();
        let n = n - 1;
        if line.is_empty() {
            flush(&mut lines, &mut emit)?;
        } else if let Some(cont) = line.strip_prefix(' ') {
            match lines.last_mut() {
                Some(last) => last.push_str(cont),
                None => return Err(ferr(format!("line {}: continuation without a line", n + 1))),
            }
        } else if line.starts_with('#') {
            // Comment lines are legal inside records; a folded comment is dropped with it.
            lines.push(String::from("#"));
        } else {
            lines.push(line);
        }
    }
    flush(&mut lines, &mut emit)?;
    Ok(summary)
}

fn parse_record(lines: &[String]) -> Result<Option<Entry>, String> {
    let mut entry: Option<Entry> = None;
    for line in lines.iter().filter(|l| *l != "#") {
        let (name, value) = match line.split_once(':') {
            Some((n, rest)) => {
                if let Some(b64) = rest.strip_prefix(':') {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .map_err(|e| format!("{n}: bad base64 ({e})"))?;
                    match String::from_utf8(bytes) {
                        Ok(s) => (n, s),
                        Err(_) => continue, // binary value (photo…): not used by the sync
                    }
                } else if rest.starts_with('<') {
                    continue; // URL reference: not followed
                } else {
                    (n, rest.trim_start().to_string())
                }
            }
            None => return Err(format!("{line:?} is not attr: value")),
        };
        let lname = name.to_ascii_lowercase();
        match (entry.as_mut(), lname.as_str()) {
            (None, "version") => {}
            (None, "dn") => entry = Some(Entry::new(value)),
            (None, _) => return Err(format!("record starts with {name:?}, not dn")),
            (Some(e), "changetype") if value.trim() != "add" => {
                return Err(format!(
                    "record {:?} is an LDIF change record (changetype: {}): this is a change file, \
                     not an export; apply it to the directory (ldapmodify) and export the directory \
                     (ldapsearch -LLL), or point SYNC_SOURCE_FILE at a full export",
                    e.dn,
                    value.trim()
                ))
            }
            (Some(_), "changetype") => {}
            (Some(e), _) => e.push(name, value),
        }
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base64_folded_and_comments() {
        let lines: Vec<String> = [
            "dn: uid=F1,ou=people,dc=ent,dc=example",
            "#",
            "sn:: TGVmw6h2cmU=",
            "givenName: Hu",
            "objectClass: ENTEleve",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let e = parse_record(&lines).unwrap().unwrap();
        assert_eq!(e.first("SN"), Some("Lefèvre"));
        assert_eq!(e.first("givenname"), Some("Hu"));
    }

    #[test]
    fn change_records_are_refused_adds_are_read() {
        let rec = |kind: &str| -> Vec<String> {
            vec![
                "dn: uid=F1,ou=people,dc=ent,dc=example".into(),
                format!("changetype: {kind}"),
                "sn: Martin".into(),
            ]
        };
        for kind in ["modify", "delete", "modrdn"] {
            let err = parse_record(&rec(kind)).unwrap_err();
            assert!(err.contains("change file") && err.contains(kind), "{err}");
        }
        assert!(parse_record(&rec("add")).unwrap().is_some());
    }
}
