//! CSV export: a header row of attribute names, one person per row, multi-valued cells
//! separated by `|`. A `dn` column is optional (else `<key>=<value>` is used).

use super::{file_selects, Entry, Query, ReadSummary, SourceError};
use crate::sync::filter::Filter;
use std::io::BufRead;
use std::path::Path;
use tokio::sync::mpsc;

pub fn read(
    path: &Path,
    key: &str,
    q: &Query,
    tx: &mpsc::Sender<Entry>,
) -> Result<ReadSummary, SourceError> {
    let ferr = |m: String| SourceError::File {
        path: path.display().to_string(),
        message: m,
    };
    let filter = Filter::parse(&q.filter).map_err(SourceError::Filter)?;
    let file = std::fs::File::open(path).map_err(|e| ferr(e.to_string()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut line_no = 0usize;
    let mut next_record = || -> Result<Option<(usize, Vec<String>)>, SourceError> {
        let mut text = String::new();
        let mut raw = String::new();
        loop {
            raw.clear();
            let got = reader
                .read_line(&mut raw)
                .map_err(|e| ferr(format!("line {}: {e}", line_no + 1)))?;
            match got {
                0 if text.is_empty() => return Ok(None),
                0 => return Err(ferr("unterminated quoted field".into())),
                _ => {
                    line_no += 1;
                    // A copy cut short ends inside a row: refuse it rather than read a partial
                    // directory as complete (everyone after the cut would look like they left).
                    let Some(l) = raw.strip_suffix('\n') else {
                        return Err(ferr(format!(
                            "line {line_no}: the file ends in the middle of a row (truncated export?)"
                        )));
                    };
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(l.strip_suffix('\r').unwrap_or(l));
                    if text.matches('"').count() % 2 == 0 {
                        return Ok(Some((line_no, split_row(&text))));
                    }
                }
            }
        }
    };
    let Some((_, header)) = next_record()? else {
        return Ok(ReadSummary {
            requests: 1,
            entries: 0,
        });
    };
    let header: Vec<String> = header
        .into_iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
        .collect();
    let mut summary = ReadSummary {
        requests: 1,
        entries: 0,
    };
    while let Some((n, row)) = next_record()? {
        if row.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if row.len() != header.len() {
            return Err(ferr(format!(
                "line {n}: {} field(s) where the header has {} (truncated or malformed row)",
                row.len(),
                header.len()
            )));
        }
        let mut e = Entry::default();
        for (name, cell) in header.iter().zip(row) {
            if name.eq_ignore_ascii_case("dn") {
                e.dn = cell;
                continue;
            }
            for v in cell.split('|').map(str::trim).filter(|v| !v.is_empty()) {
                e.push(name, v);
            }
        }
        if e.dn.is_empty() {
            e.dn = format!("{key}={}", e.first(key).unwrap_or_default());
        }
        if file_selects(&e, q, &filter) {
            summary.entries += 1;
            tx.blocking_send(e)
                .map_err(|_| ferr("read stopped by the consumer".into()))?;
        }
    }
    Ok(summary)
}

/// RFC 4180 row: commas, double quotes, `""` inside quotes.
fn split_row(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoted_cells() {
        assert_eq!(
            super::split_row(r#"a,"b, c","d ""e""",f|g"#),
            vec!["a", "b, c", "d \"e\"", "f|g"]
        );
    }
}
