//! `TeamsAppInstall`: a timer (a function has one trigger, so not part of `ManifestPublish`)
//! that keeps installs in step with the teams the course sync made and with the catalog's
//! version. Each course sync pass already installs into the teams it made ready
//! (`install::AfterTeamsSync`); this is the catch-up (an app published later, an upgrade, a
//! team Graph did not know yet). Nothing to do is not a failure: no Graph settings or no
//! published app is logged.

use super::install::install_from_settings;
use super::TeamsAppError;
use crate::app::AppState;
use crate::error::{FunctionError, FunctionOutputs};
use crate::host::functions::InvocationContext;
use crate::host::TimerInfo;

pub async fn on_timer(
    state: &AppState,
    ctx: &InvocationContext,
    _timer: TimerInfo,
) -> Result<FunctionOutputs, FunctionError> {
    match install_from_settings(state, true, &[]).await {
        Ok(report) => {
            let mut out = FunctionOutputs::default().log(format!(
                "{}: Teams app {} in {} target(s), {} failed",
                ctx.invocation_id,
                report.version,
                report.targets.len(),
                report.failed()
            ));
            for t in &report.targets {
                out = out.log(t.to_string());
            }
            if let Some(why) = report.stopped {
                // A missing permission: every run would fail the same way until an admin acts.
                return Err(FunctionError::Permanent(why));
            }
            Ok(out)
        }
        Err(TeamsAppError::Settings(p)) => {
            Ok(FunctionOutputs::default()
                .log(format!("Teams app install not run: {}", p.join("; "))))
        }
        Err(e) => Err(FunctionError::Failed(anyhow::anyhow!(e.to_string()))),
    }
}
