//! `laojun postmortem ID [-o FILE]`: the markdown the server renders.

use std::path::Path;
use std::process::ExitCode;

use super::{finish, Failure, ServerArgs};

pub async fn postmortem(id: &str, file: Option<&Path>, server: &ServerArgs) -> ExitCode {
    let result = match server.client().postmortem(id).await {
        Ok(text) => match file {
            Some(path) => std::fs::write(path, &text)
                .map(|()| format!("wrote {}\n", path.display()))
                .map_err(|e| Failure::Other(format!("cannot write {}: {e}", path.display()))),
            None => Ok(text),
        },
        Err(e) => Err(e.into()),
    };
    finish(result, true)
}
