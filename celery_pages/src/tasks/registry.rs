//! The registry: every task a worker runs, by its Celery name, with the
//! Python signature its arguments are bound to.
//!
//! A task message carries `args` and `kwargs` as JSON; a Python worker
//! binds them to the task function's parameters, and a call that does not
//! fit raises CPython's own `TypeError` text. A [`Task`] keeps the
//! parameter names for the same binding, so a Python caller sees the same
//! error from either worker. Typed functions (see [`Task::new`]) get their
//! arguments deserialized with serde after binding, and their result
//! serialized back; the built-ins that need more (a call that sends further
//! tasks, or runs other registered tasks in this process) are written
//! against [`Call`] directly.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use crate::message::PyException;

/// What a task returns: its value, or the Python exception it raises.
pub type TaskResult<T> = Result<T, PyException>;

/// What a task that ran came to: its value, and the signatures of the
/// tasks it sends on (as `celery.chunks` sends its group of starmaps).
#[derive(Clone, Debug, PartialEq)]
pub struct Done {
    pub value: Value,
    pub sends: Vec<Value>,
}

impl From<Value> for Done {
    fn from(value: Value) -> Self {
        Done {
            value,
            sends: Vec::new(),
        }
    }
}

/// Why a task gave no value.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// No task of that name here: the message can never run.
    NotRegistered(PyException),
    /// The arguments do not fit the task's parameters: the message can
    /// never run.
    BadCall(PyException),
    /// The task ran and raised.
    Raised(PyException),
}

impl Failure {
    /// The exception, whatever the failure.
    pub fn exception(self) -> PyException {
        match self {
            Failure::NotRegistered(exc) | Failure::BadCall(exc) | Failure::Raised(exc) => exc,
        }
    }
}

/// One call of a task: the arguments as the message carries them, what
/// the task may know of its own request, and the registry it runs from (so
/// a task may run other tasks in this process, as `celery.map` does).
pub struct Call {
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub context: TaskContext,
    pub tasks: Arc<Registry>,
}

/// What a bound task knows of its own request, as Celery's `self.request`:
/// a task function whose first parameter is a `TaskContext` gets it (see
/// [`Task::new`]).
#[derive(Clone, Debug, Default)]
pub struct TaskContext {
    /// The task id.
    pub id: String,
    /// How many times it was retried before this run.
    pub retries: u32,
    /// Told when the task's soft time limit passes.
    pub soft_limit: SoftLimit,
}

impl TaskContext {
    /// Asks to run again, as Celery's `self.retry(exc=..., countdown=...)`:
    /// return it as the task's error. The task is sent again in
    /// `countdown` seconds (else its `default_retry_delay`) while it has
    /// retries left (its `max_retries`); past them it fails with `exc`, or,
    /// without one, Celery's `MaxRetriesExceededError`.
    ///
    /// ```
    /// use celery_pages::tasks::{TaskContext, TaskResult};
    /// fn patient(task: TaskContext, ready: bool) -> TaskResult<&'static str> {
    ///     if !ready {
    ///         return Err(task.retry(None, Some(5.0)));
    ///     }
    ///     Ok("done")
    /// }
    /// ```
    pub fn retry(&self, exc: Option<PyException>, countdown: Option<f64>) -> PyException {
        let when = countdown.map_or_else(|| "later".to_owned(), |c| format!("in {c}s"));
        let message = match &exc {
            Some(exc) => format!("Retry {when}: {}", exc.repr()),
            None => format!("Retry {when}"),
        };
        PyException {
            args: Some(vec![countdown.map_or(Value::Null, Value::from)]),
            cause: exc.map(Box::new),
            ..PyException::celery("celery.exceptions", "Retry", message)
        }
    }

    /// Whether `exc` is a task's request to run again (made by
    /// [`TaskContext::retry`]).
    pub fn is_retry(exc: &PyException) -> bool {
        exc.exc_type == "Retry" && exc.exc_module == "celery.exceptions"
    }
}

/// A task's soft time limit, as the task sees it. An async task that
/// awaits [`SoftLimit::reached`] (beside its work, in a `select!`) handles
/// its soft limit, as a Python task that catches `SoftTimeLimitExceeded`:
/// it may clean up and return, until the hard limit. A task that does not
/// is stopped at the soft limit and answered `SoftTimeLimitExceeded()`.
#[derive(Clone, Debug, Default)]
pub struct SoftLimit {
    /// `None` for a task with no soft limit: nothing to tell, and nothing
    /// allocated for it.
    armed: Option<Arc<ArmedSoftLimit>>,
}

#[derive(Debug, Default)]
struct ArmedSoftLimit {
    reached: tokio_util::sync::CancellationToken,
    handled: std::sync::atomic::AtomicBool,
}

impl SoftLimit {
    /// A soft limit the worker will [`pass`](SoftLimit::pass).
    pub fn armed() -> Self {
        SoftLimit {
            armed: Some(Arc::default()),
        }
    }

    /// Completes when the soft time limit passes (never, without one); the
    /// task then handles it.
    pub async fn reached(&self) {
        match &self.armed {
            Some(armed) => {
                armed
                    .handled
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                armed.reached.cancelled().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Tells the task its soft limit passed; true if it handles it.
    pub fn pass(&self) -> bool {
        self.armed.as_ref().is_some_and(|armed| {
            armed.reached.cancel();
            armed.handled.load(std::sync::atomic::Ordering::Relaxed)
        })
    }
}

/// Celery's per-task options that decide what follows an exception.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskOptions {
    /// Exception types (by name: `"ValueError"`; `"Exception"` for any)
    /// that make the task retry (Celery's `autoretry_for`).
    pub autoretry_for: Vec<String>,
    /// Retries at most (Celery's default 3); `None`: for ever.
    pub max_retries: Option<u32>,
    /// Seconds to wait before a retry (Celery's default 180).
    pub default_retry_delay: f64,
    /// Exponential backoff instead: `factor * 2^retries` seconds (Celery's
    /// `retry_backoff=True` is a factor of 1).
    pub retry_backoff: Option<u32>,
    /// The backoff's ceiling, in seconds (Celery's default 600).
    pub retry_backoff_max: u64,
    /// With backoff, wait a random time from 0 up to it (Celery's default).
    pub retry_jitter: bool,
    /// Seconds after which the task is stopped and answered
    /// `TimeLimitExceeded` (Celery's `time_limit`), unless the message
    /// says otherwise.
    pub time_limit: Option<f64>,
    /// Seconds after which the task is told (Celery's `soft_time_limit`).
    pub soft_time_limit: Option<f64>,
    /// At most this many tasks of this type start, per worker (Celery's
    /// `rate_limit`: `"10/s"`, `"100/m"`, `"1/h"`).
    pub rate_limit: Option<String>,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            autoretry_for: Vec::new(),
            max_retries: Some(3),
            default_retry_delay: 180.0,
            retry_backoff: None,
            retry_backoff_max: 600,
            retry_jitter: true,
            time_limit: None,
            soft_time_limit: None,
            rate_limit: None,
        }
    }
}

impl TaskOptions {
    /// Whether an exception of type `exc_type` makes the task retry.
    pub fn retries_on(&self, exc_type: &str) -> bool {
        self.autoretry_for
            .iter()
            .any(|name| name == exc_type || name == "Exception")
    }

    /// Seconds to wait before the retry that follows run number
    /// `retries + 1`, as Celery's autoretry computes it (`jitter` is a
    /// random number in `0..=u64::MAX`, used only with backoff and jitter).
    ///
    /// ```
    /// use celery_pages::tasks::TaskOptions;
    /// let backoff = TaskOptions { retry_backoff: Some(2), retry_jitter: false, ..TaskOptions::default() };
    /// assert_eq!(backoff.countdown(0, 0), 2.0);
    /// assert_eq!(backoff.countdown(3, 0), 16.0);
    /// assert_eq!(backoff.countdown(20, 0), 600.0);
    /// assert_eq!(TaskOptions::default().countdown(5, 0), 180.0);
    /// ```
    pub fn countdown(&self, retries: u32, jitter: u64) -> f64 {
        let Some(factor) = self.retry_backoff else {
            return self.default_retry_delay;
        };
        let exponential = 2u64.checked_pow(retries).unwrap_or(u64::MAX);
        let countdown = u64::from(factor.max(1))
            .saturating_mul(exponential)
            .min(self.retry_backoff_max);
        let countdown = if self.retry_jitter {
            jitter % (countdown + 1)
        } else {
            countdown
        };
        countdown as f64
    }

    /// What follows exception `exc` in the run after `retries` retries: a
    /// retry in so many seconds, or `None` (it fails: not an exception to
    /// retry on, or no retries left, where Celery raises the task's own
    /// exception).
    pub fn retry_after(&self, exc: &PyException, retries: u32, jitter: u64) -> Option<f64> {
        (self.retries_on(&exc.exc_type) && self.retries_left(retries))
            .then(|| self.countdown(retries, jitter))
    }

    /// Whether a task retried `retries` times so far may be retried once
    /// more (Celery: `retries + 1 <= max_retries`).
    pub fn retries_left(&self, retries: u32) -> bool {
        self.max_retries.is_none_or(|max| retries < max)
    }
}

type SyncBody = dyn Fn(Call) -> Result<Done, Failure> + Send + Sync;
type AsyncBody = dyn Fn(Call) -> BoxFuture<'static, Result<Done, Failure>> + Send + Sync;

/// How a task runs.
pub enum Body {
    /// A plain function, called on the worker's own thread: it must be
    /// quick (as `add` is), since it holds that thread while it runs.
    Sync(Box<SyncBody>),
    /// An async function, awaited: it may wait (on a timer, a socket,
    /// another service) without holding a thread.
    Async(Box<AsyncBody>),
}

/// The Python function a task stands for: its name (the one CPython's
/// `TypeError` messages give) and its parameters, none with a default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub function: Arc<str>,
    pub params: Vec<&'static str>,
    /// `*args, **kwargs`: takes anything.
    pub variadic: bool,
}

impl Signature {
    /// `function(params...)`.
    pub fn new(function: &str, params: &[&'static str]) -> Self {
        Signature {
            function: function.into(),
            params: params.to_vec(),
            variadic: false,
        }
    }

    /// `function(*args, **kwargs)`.
    pub fn variadic(function: &str) -> Self {
        Signature {
            function: function.into(),
            params: Vec::new(),
            variadic: true,
        }
    }

    /// Whether it takes more than `n` positional arguments, as Celery's
    /// `arity_greater` decides whether an errback runs in place.
    pub fn takes_more_than(&self, n: usize) -> bool {
        self.variadic || self.params.len() > n
    }
}

/// A task: its Celery name, the Python signature its arguments are bound
/// to, and its body.
pub struct Task {
    name: String,
    signature: Signature,
    options: TaskOptions,
    body: Body,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.name)
            .field("signature", &self.signature)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The function name Python would report for the task `name`: Celery names
/// a task `<module>.<function>`.
fn function_of(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

impl Task {
    /// A task from a typed function, sync or async, whose parameters are
    /// named `params` (as Python binds keyword arguments to them). A
    /// function whose first parameter is a [`TaskContext`] is bound, as a
    /// Celery task with `bind=True`: it gets its request first, and
    /// `params` names the parameters after it. Each
    /// argument is deserialized into its parameter's type, and the result
    /// serialized back; an argument of the wrong type is the task raising
    /// `TypeError`, as the same call would raise inside a Python task.
    ///
    /// ```
    /// use celery_pages::tasks::{Task, TaskResult};
    ///
    /// fn multiply(pages: u64, books: u64) -> TaskResult<u64> {
    ///     Ok(pages * books)
    /// }
    /// let task = Task::new("pages.multiply", ["pages", "books"], multiply);
    /// assert_eq!(task.name(), "pages.multiply");
    /// ```
    pub fn new<Marker, const N: usize>(
        name: &str,
        params: [&'static str; N],
        function: impl super::typed::Handler<Marker, N>,
    ) -> Task {
        let signature = Signature::new(function_of(name), &params);
        let body = function.into_body(Arc::clone(&signature.function), params);
        Task {
            name: name.to_owned(),
            signature,
            options: TaskOptions::default(),
            body,
        }
    }

    /// A task written against the raw [`Call`], for the Python function
    /// `signature`: the body binds (or reads) the arguments itself.
    pub fn from_call(
        name: &str,
        signature: Signature,
        body: impl Fn(Call) -> Result<Done, Failure> + Send + Sync + 'static,
    ) -> Task {
        Task {
            name: name.to_owned(),
            signature,
            options: TaskOptions::default(),
            body: Body::Sync(Box::new(body)),
        }
    }

    /// [`Task::from_call`] for a body that awaits.
    pub fn from_async_call<F>(
        name: &str,
        signature: Signature,
        body: impl Fn(Call) -> F + Send + Sync + 'static,
    ) -> Task
    where
        F: Future<Output = Result<Done, Failure>> + Send + 'static,
    {
        Task {
            name: name.to_owned(),
            signature,
            options: TaskOptions::default(),
            body: Body::Async(Box::new(move |call| Box::pin(body(call)))),
        }
    }

    /// With Celery's per-task `options` (retries, ...).
    #[must_use]
    pub fn with_options(mut self, options: TaskOptions) -> Self {
        self.options = options;
        self
    }

    /// Its Celery options.
    pub fn options(&self) -> &TaskOptions {
        &self.options
    }

    /// Its Celery name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Python function it stands for.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Whether it is a plain function, which holds the thread it runs on.
    pub fn is_plain(&self) -> bool {
        matches!(self.body, Body::Sync(_))
    }

    /// Runs it with the arguments of `call`.
    pub async fn run(&self, call: Call) -> Result<Done, Failure> {
        match &self.body {
            Body::Sync(body) => body(call),
            Body::Async(body) => body(call).await,
        }
    }
}

/// The tasks a worker runs, by name.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::sync::Arc;
/// use celery_pages::tasks::{Registry, Task, TaskResult};
/// use serde_json::{Map, json};
///
/// async fn shout(text: String) -> TaskResult<String> {
///     Ok(text.to_uppercase())
/// }
/// let tasks = Arc::new(Registry::chapter().register(Task::new("pages.shout", ["text"], shout)));
/// let done = tasks.run("pages.shout", vec![json!("halaman")], Map::new()).await;
/// assert_eq!(done.unwrap().value, json!("HALAMAN"));
/// assert!(tasks.run("pages.whisper", vec![], Map::new()).await.is_err());
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Registry {
    tasks: BTreeMap<String, Task>,
}

impl Registry {
    /// No tasks at all.
    pub fn empty() -> Self {
        Registry::default()
    }

    /// Adds `task` (in place of one of the same name).
    #[must_use]
    pub fn register(mut self, task: Task) -> Self {
        self.tasks.insert(task.name.clone(), task);
        self
    }

    /// The task named `name`.
    pub fn get(&self, name: &str) -> Option<&Task> {
        self.tasks.get(name)
    }

    /// Every task, by name.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    /// The names of the user's tasks, sorted: every task but Celery's
    /// built-ins (`celery.*`), as `celery inspect registered` lists them.
    pub fn user_tasks(&self) -> Vec<&str> {
        self.tasks
            .keys()
            .map(String::as_str)
            .filter(|name| !name.starts_with("celery."))
            .collect()
    }

    /// Runs task `name` with `args` and `kwargs`, as a Python worker would.
    pub async fn run(
        self: &Arc<Self>,
        name: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> Result<Done, Failure> {
        self.run_as(name, args, kwargs, TaskContext::default())
            .await
    }

    /// [`Registry::run`] for the request `context` describes.
    pub async fn run_as(
        self: &Arc<Self>,
        name: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        context: TaskContext,
    ) -> Result<Done, Failure> {
        let Some(task) = self.tasks.get(name) else {
            return Err(Failure::NotRegistered(not_registered(name)));
        };
        let call = Call {
            args,
            kwargs,
            context,
            tasks: Arc::clone(self),
        };
        task.run(call).await
    }
}

/// Celery's exception for a task name no worker here has.
pub fn not_registered(name: &str) -> PyException {
    PyException::celery("celery.exceptions", "NotRegistered", name)
}

/// Binds `args` and `kwargs` to the parameters `params` of the Python
/// function `function` (none with a default), in their order; or the
/// `TypeError` CPython raises, word for word, for a call that does not fit.
///
/// ```
/// use celery_pages::tasks::bind_arguments;
/// use serde_json::{Map, json};
/// let err = bind_arguments::<2>("xmap", &["task", "it"], vec![json!(1)], Map::new()).unwrap_err();
/// assert_eq!(err.message, "xmap() missing 1 required positional argument: 'it'");
/// ```
pub fn bind_arguments<const N: usize>(
    function: &str,
    params: &[&str; N],
    args: Vec<Value>,
    kwargs: Map<String, Value>,
) -> Result<[Value; N], PyException> {
    let keywords: Vec<&str> = kwargs.keys().map(String::as_str).collect();
    let sources = python_text::bind(function, params, args.len(), &keywords)
        .map_err(|message| PyException::builtin("TypeError", message))?;
    let mut args: Vec<Option<Value>> = args.into_iter().map(Some).collect();
    let mut values: Vec<Option<Value>> = kwargs.into_iter().map(|(_, v)| Some(v)).collect();
    let mut sources = sources.into_iter();
    Ok(std::array::from_fn(|_| {
        match sources.next() {
            Some(python_text::Source::Positional(i)) => args.get_mut(i).and_then(Option::take),
            Some(python_text::Source::Keyword(i)) => values.get_mut(i).and_then(Option::take),
            None => None,
        }
        .unwrap_or(Value::Null)
    }))
}
