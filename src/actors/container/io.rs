//! A process's stdio: close stdin and resize through its shim's control fifo (control
//! messages 0 and 1), and what `attach` and `logs` need to know about it.

use super::state::Verb;
use super::Container;
use super::ProcessIo;
use crate::error::{Error, Result};
use crate::types::*;
use actix::prelude::*;

/// Closes a process's stdin.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct CloseProcessStdin {
    /// `None` for init.
    pub exec_id: Option<String>,
}

impl Handler<CloseProcessStdin> for Container {
    type Result = Result<()>;

    fn handle(&mut self, msg: CloseProcessStdin, _: &mut Context<Self>) -> Self::Result {
        self.guard(Verb::CloseStdin)?;
        let slot = self.slot(msg.exec_id.as_deref())?;
        slot.process
            .as_ref()
            .ok_or_else(|| {
                Error::WrongState(format!(
                    "process {} of container {} is not running",
                    msg.exec_id.as_deref().unwrap_or(INIT_PROCESS),
                    self.key()
                ))
            })?
            .close_stdin(
                &self
                    .dir
                    .process(msg.exec_id.as_deref().unwrap_or(INIT_PROCESS)),
            )
    }
}

/// Resizes a process's terminal.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct ResizeProcess {
    /// `None` for init.
    pub exec_id: Option<String>,
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

impl Handler<ResizeProcess> for Container {
    type Result = Result<()>;

    fn handle(&mut self, msg: ResizeProcess, _: &mut Context<Self>) -> Self::Result {
        let name = msg.exec_id.as_deref().unwrap_or(INIT_PROCESS);
        self.guard(Verb::CloseStdin)?;
        if msg.width == 0 || msg.height == 0 {
            return Err(Error::InvalidArgument(format!(
                "resize to {}x{}: width and height must be at least 1",
                msg.width, msg.height
            )));
        }
        let slot = self.slot(msg.exec_id.as_deref())?;
        if !slot.io.terminal {
            return Err(Error::InvalidArgument(format!(
                "process {name} of container {} has no terminal to resize",
                self.key()
            )));
        }
        slot.process
            .as_ref()
            .ok_or_else(|| {
                Error::WrongState(format!(
                    "process {name} of container {} is not running",
                    self.key()
                ))
            })?
            .resize(&self.dir.process(name), msg.width, msg.height)
    }
}

/// What `attach` and `logs` need of one process: its stdio as launched, and whether it
/// still runs.
#[derive(Message)]
#[rtype(result = "Result<ProcessStdio>")]
pub struct GetProcessStdio {
    /// `None` for init.
    pub exec_id: Option<String>,
}

/// One process's stdio, for `attach` and `logs`.
#[derive(Clone, Debug)]
pub struct ProcessStdio {
    /// As launched.
    pub io: ProcessIo,
    /// Its exit, once known.
    pub exit: Option<ExitStatus>,
}

impl Handler<GetProcessStdio> for Container {
    type Result = Result<ProcessStdio>;

    fn handle(&mut self, msg: GetProcessStdio, _: &mut Context<Self>) -> Self::Result {
        let slot = self.slot(msg.exec_id.as_deref())?;
        Ok(ProcessStdio {
            io: slot.io.clone(),
            exit: slot.exit,
        })
    }
}
