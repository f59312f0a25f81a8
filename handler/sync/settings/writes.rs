//! How a run writes: people planned together, and write calls in flight at once.

use crate::config::Source;

pub(super) struct Writes {
    pub batch_size: usize,
    pub write_concurrency: usize,
}

pub(super) fn load(src: &mut Source) -> Writes {
    let batch_size = src.parse(
        "SYNC_BATCH_SIZE",
        500usize,
        "people planned together: one lookup per batch, writes split further by MOODLE_MAX_FORM_FIELDS",
    );
    let write_concurrency = src.parse(
        "SYNC_WRITE_CONCURRENCY",
        2usize,
        "Moodle write calls of one batch in flight at once (independent people; memberships wait for their users)",
    );
    if write_concurrency == 0 {
        src.problem("SYNC_WRITE_CONCURRENCY: at least 1");
    }
    Writes {
        batch_size: batch_size.max(1),
        write_concurrency: write_concurrency.max(1),
    }
}
