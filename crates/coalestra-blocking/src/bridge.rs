//! [`Bridge`]: carries operations from plain threads onto the facade's
//! runtime and their outcomes back, and closes everything in order.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use coalestra_core::CoalestraError;
use coalestra_orchestration::SnapshotBuilder;

use crate::backlog::{Admission, Backlog};
use crate::completion::{Completion, SubmissionHandle};
use crate::error::{ensure_blocking_allowed, BlockingError};
use crate::options::BlockingOptions;
use crate::runtime::{RuntimeThread, Shutdown};

/// State shared by a facade and the sessions and publishers it hands out.
pub(crate) struct Bridge {
    builder: SnapshotBuilder,
    options: BlockingOptions,
    backlog: Arc<Backlog>,
    runtime: RuntimeThread,
}

impl Bridge {
    /// Validates the options and starts the runtime thread.
    pub(crate) fn start(
        builder: SnapshotBuilder,
        options: BlockingOptions,
    ) -> Result<Self, BlockingError> {
        options.validate()?;
        ensure_blocking_allowed()?;
        let backlog = Backlog::new(options.max_pending_submissions);
        let runtime = RuntimeThread::start(Shutdown {
            backlog: Arc::clone(&backlog),
            builder: builder.clone(),
            options,
        })?;
        Ok(Self {
            builder,
            options,
            backlog,
            runtime,
        })
    }

    pub(crate) fn builder(&self) -> &SnapshotBuilder {
        &self.builder
    }

    pub(crate) fn options(&self) -> &BlockingOptions {
        &self.options
    }

    /// Runs `operation` on the runtime and blocks until it is over.
    pub(crate) fn call<T, F>(&self, operation: F) -> Result<T, BlockingError>
    where
        F: Future<Output = Result<T, CoalestraError>> + Send + 'static,
        T: Send + 'static,
    {
        ensure_blocking_allowed()?;
        let (completion, _) = self.launch(Admission::Call, operation)?;
        completion.take().map_err(BlockingError::from)
    }

    /// Starts `operation` on the runtime within the submission bound and
    /// returns at once.
    pub(crate) fn submit<T, F>(&self, operation: F) -> Result<SubmissionHandle<T>, BlockingError>
    where
        F: Future<Output = Result<T, CoalestraError>> + Send + 'static,
        T: Send + 'static,
    {
        let (completion, id) = self.launch(Admission::Submission, operation)?;
        Ok(SubmissionHandle::new(completion, id))
    }

    fn launch<T, F>(
        &self,
        admission: Admission,
        operation: F,
    ) -> Result<(Arc<Completion<T>>, u64), BlockingError>
    where
        F: Future<Output = Result<T, CoalestraError>> + Send + 'static,
        T: Send + 'static,
    {
        let completion = Completion::new();
        let ticket = self.backlog.admit(admission, Arc::clone(&completion))?;
        let id = ticket.id();
        let task = self.runtime.handle().spawn(async move {
            let result = operation.await;
            ticket.finish(result);
        });
        self.backlog.attach(id, task.abort_handle());
        Ok((completion, id))
    }

    pub(crate) fn pending_submissions(&self) -> usize {
        self.backlog.pending_submissions()
    }

    pub(crate) fn max_pending_submissions(&self) -> usize {
        self.backlog.limit()
    }

    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), BlockingError> {
        self.backlog.flush(timeout)
    }

    pub(crate) fn is_closed(&self) -> bool {
        !self.backlog.is_accepting()
    }

    pub(crate) fn is_running(&self) -> bool {
        self.runtime.is_alive()
    }

    /// Stops accepting work, runs the shutdown sequence on the runtime
    /// thread and joins it. Idempotent; concurrent callers return once the
    /// first one finished.
    pub(crate) fn close(&self) -> Result<(), BlockingError> {
        ensure_blocking_allowed()?;
        self.backlog.stop_accepting();
        match self.runtime.stop() {
            None => Ok(()),
            Some(Ok(report)) => report.into_result(&self.options),
            Some(Err(_)) => Err(BlockingError::RuntimeUnavailable {
                reason: "the runtime thread panicked while shutting down".to_owned(),
            }),
        }
    }

    /// Starts the shutdown without waiting for it (for drops inside an
    /// async runtime, where joining could block that runtime).
    pub(crate) fn close_detached(&self) {
        self.backlog.stop_accepting();
        self.runtime.stop_detached();
    }
}
