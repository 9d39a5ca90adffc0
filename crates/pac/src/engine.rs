//! The sandbox: one QuickJS runtime per compiled PAC, with a memory limit, a stack limit and an
//! interrupt handler that stops any evaluation past its wall-clock deadline.
//!
//! The PAC runs with no I/O at all except the helpers in `prelude.js` and the natives registered
//! here (DNS through a [`Resolver`] with its own timeout and a per-evaluation cache, the local
//! address, the clock). A compiled [`Pac`] keeps its context, so the script is parsed and its
//! top-level code run once, then `FindProxyForURL` is called per request, as browsers do. After a
//! timeout or an out-of-memory error the context is thrown away and rebuilt on the next call, so a
//! half-run script can never leave broken state behind.
//!
//! A [`Pac`] is not `Send` (QuickJS runtimes are single-threaded): keep it on the thread that
//! evaluates, e.g. one PAC thread fed through a channel.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Object, Runtime, Value};
use time::{OffsetDateTime, UtcOffset};

use crate::dns::{Resolver, SystemResolver};
use crate::helpers::{self, Arg, Moment};

const PRELUDE: &str = include_str!("prelude.js");
/// The file name QuickJS reports in stack traces of the PAC itself; error lines are read from it.
const SCRIPT_NAME: &str = "pac.js";
const LOADING: &str = "loading the script";
const EVALUATION: &str = "evaluation";

/// Resource limits of the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock limit of one `FindProxyForURL` call, DNS lookups included.
    pub eval_timeout: Duration,
    /// Wall-clock limit of compiling the script and running its top-level code.
    pub load_timeout: Duration,
    /// Memory of the whole JavaScript heap, compiled script included.
    pub memory_bytes: usize,
    /// JavaScript stack (deep recursion is an exception, not a crash).
    pub stack_bytes: usize,
    /// Largest PAC source accepted.
    pub max_source_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            eval_timeout: Duration::from_secs(2),
            load_timeout: Duration::from_secs(5),
            memory_bytes: 64 << 20,
            stack_bytes: 512 << 10,
            max_source_bytes: 8 << 20,
        }
    }
}

/// The clock the date and time helpers see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    /// The system clock and the process's local time zone.
    #[default]
    System,
    /// A fixed instant; its UTC offset is the local time zone the helpers see.
    Fixed(OffsetDateTime),
}

/// Per-evaluation inputs.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Answers `dnsResolve`, `isResolvable`, `isInNet` on names, and the `Ex` forms.
    pub resolver: Arc<dyn Resolver>,
    /// Limit of one lookup (the evaluation's own deadline also bounds it).
    pub dns_timeout: Duration,
    /// What `myIpAddress` / `myIpAddressEx` return; `None` asks the system which local address
    /// routes to the Internet (a UDP `connect`, which sends nothing), else 127.0.0.1.
    pub my_ip: Vec<IpAddr>,
    pub clock: Clock,
}

impl Default for EvalOptions {
    fn default() -> EvalOptions {
        EvalOptions {
            resolver: Arc::new(SystemResolver::new()),
            dns_timeout: Duration::from_secs(2),
            my_ip: Vec::new(),
            clock: Clock::System,
        }
    }
}

/// Why a PAC could not be compiled or evaluated. Each message names the step and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacError {
    #[error(
        "the PAC script is {size} bytes, over the {limit}-byte limit; is this really a PAC file?"
    )]
    TooLarge { size: usize, limit: usize },
    #[error("the PAC script does not compile: {message}{}; fix the script (browsers would reject it too)", line_suffix(*line))]
    Syntax { message: String, line: Option<u32> },
    #[error("the PAC script threw while loading: {message}{}; fix its top-level code", line_suffix(*line))]
    Load { message: String, line: Option<u32> },
    #[error(
        "the PAC script defines neither FindProxyForURL nor FindProxyForURLEx; is this a PAC file?"
    )]
    NoEntryPoint,
    #[error("{function} threw: {message}{}", line_suffix(*line))]
    Exception {
        function: String,
        message: String,
        line: Option<u32>,
    },
    #[error("the PAC script ran longer than {limit:?} ({phase}) and was stopped; look for an endless loop or slow DNS lookups")]
    Timeout {
        limit: Duration,
        phase: &'static str,
    },
    #[error("the PAC script used more than {limit} bytes of memory ({phase}) and was stopped")]
    OutOfMemory { limit: usize, phase: &'static str },
    #[error("{function} returned {got}, not a string; a PAC must return e.g. \"PROXY host:port; DIRECT\"")]
    NotAString { function: String, got: String },
    #[error("the JavaScript engine failed: {0}")]
    Engine(String),
}

fn line_suffix(line: Option<u32>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

impl PacError {
    /// The script line the error points at, if known.
    pub fn line(&self) -> Option<u32> {
        match self {
            PacError::Syntax { line, .. }
            | PacError::Load { line, .. }
            | PacError::Exception { line, .. } => *line,
            _ => None,
        }
    }
}

/// What the natives read and write during one evaluation.
struct EvalState {
    resolver: Arc<dyn Resolver>,
    dns_timeout: Duration,
    my_ip: Vec<IpAddr>,
    clock: Clock,
    deadline: Option<Instant>,
    /// Per-evaluation DNS cache: a PAC asking `isInNet(host, …)` fifty times does one lookup.
    dns_cache: HashMap<String, Vec<IpAddr>>,
    alerts: Vec<String>,
}

impl EvalState {
    fn new(opts: &EvalOptions, deadline: Option<Instant>) -> EvalState {
        EvalState {
            resolver: Arc::clone(&opts.resolver),
            dns_timeout: opts.dns_timeout,
            my_ip: opts.my_ip.clone(),
            clock: opts.clock,
            deadline,
            dns_cache: HashMap::new(),
            alerts: Vec::new(),
        }
    }

    fn lookup(&mut self, host: &str) -> Vec<IpAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return vec![ip];
        }
        let key = host.to_ascii_lowercase();
        if let Some(ips) = self.dns_cache.get(&key) {
            return ips.clone();
        }
        let mut timeout = self.dns_timeout;
        if let Some(d) = self.deadline {
            timeout = timeout.min(d.saturating_duration_since(Instant::now()));
        }
        let ips = if timeout.is_zero() {
            Vec::new()
        } else {
            // Mapped answers (`::ffff:a.b.c.d`) are their IPv4 address, each address once.
            helpers::canonical_unique(self.resolver.resolve(host, timeout).unwrap_or_default())
        };
        self.dns_cache.insert(key, ips.clone());
        ips
    }

    fn my_ips(&mut self) -> Vec<IpAddr> {
        if self.my_ip.is_empty() {
            self.my_ip = discover_local_ips();
        }
        helpers::canonical_unique(self.my_ip.iter().copied())
    }
}

/// The local addresses that route to the Internet, as browsers find them: `connect` a UDP socket
/// (no packet is sent) and read its local address. Falls back to 127.0.0.1.
fn discover_local_ips() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let probes: [(IpAddr, &str); 2] = [
        (IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), "0.0.0.0:0"),
        (
            IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888)),
            "[::]:0",
        ),
    ];
    for (target, bind) in probes {
        if let Ok(sock) = UdpSocket::bind(bind) {
            if sock.connect((target, 53)).is_ok() {
                if let Ok(local) = sock.local_addr() {
                    if !local.ip().is_unspecified() {
                        out.push(local.ip());
                    }
                }
            }
        }
    }
    if out.is_empty() {
        out.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    out
}

struct Engine {
    // Field order matters: the context must drop before its runtime.
    ctx: Context,
    rt: Runtime,
    state: Rc<RefCell<EvalState>>,
    deadline: Rc<Cell<Option<Instant>>>,
    interrupted: Rc<Cell<bool>>,
    entry: &'static str,
    limits: Limits,
}

/// A compiled PAC script, ready to answer `FindProxyForURL` many times.
pub struct Pac {
    source: Arc<str>,
    limits: Limits,
    engine: Option<Engine>,
}

impl fmt::Debug for Pac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pac")
            .field("source_bytes", &self.source.len())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Pac {
    /// Compiles `source` with the default [`Limits`]: parses it, runs its top-level code, and
    /// checks that it defines `FindProxyForURL` (or `FindProxyForURLEx`).
    pub fn compile(source: &str) -> Result<Pac, PacError> {
        Pac::compile_with(source, Limits::default())
    }

    /// Like [`Pac::compile`] with explicit limits.
    pub fn compile_with(source: &str, limits: Limits) -> Result<Pac, PacError> {
        if source.len() > limits.max_source_bytes {
            return Err(PacError::TooLarge {
                size: source.len(),
                limit: limits.max_source_bytes,
            });
        }
        let engine = Engine::build(source, &limits)?;
        Ok(Pac {
            source: Arc::from(source),
            limits,
            engine: Some(engine),
        })
    }

    /// The script's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The limits this PAC runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Calls `FindProxyForURLEx(url, host)` if the script defines it, else
    /// `FindProxyForURL(url, host)`, and returns exactly the string it returned. Parse it with
    /// [`crate::parse_pac_result`].
    pub fn find_proxy(
        &mut self,
        url: &str,
        host: &str,
        opts: &EvalOptions,
    ) -> Result<String, PacError> {
        self.run(opts, |engine, ctx| {
            let globals = ctx.globals();
            let f: Function = globals
                .get(engine.entry)
                .map_err(|e| PacError::Engine(e.to_string()))?;
            let result: rquickjs::Result<Value> = f.call((url, host));
            match result.catch(&ctx) {
                Ok(v) => match v.as_string() {
                    Some(s) => s.to_string().map_err(|e| PacError::Engine(e.to_string())),
                    None => Err(PacError::NotAString {
                        function: engine.entry.to_string(),
                        got: describe(&v),
                    }),
                },
                Err(e) => {
                    Err(
                        engine.classify(e, EVALUATION, |message, line| PacError::Exception {
                            function: engine.entry.to_string(),
                            message,
                            line,
                        }),
                    )
                }
            }
        })
    }

    /// Evaluates a JavaScript expression in the PAC's context and returns its value as JSON
    /// (`undefined` for undefined). For tests and debugging of helpers; same sandbox and limits.
    pub fn evaluate_json(
        &mut self,
        expression: &str,
        opts: &EvalOptions,
    ) -> Result<String, PacError> {
        self.run(opts, |engine, ctx| {
            let result: rquickjs::Result<Value> = ctx.eval(format!("JSON.stringify({expression})"));
            match result.catch(&ctx) {
                Ok(v) if v.is_undefined() => Ok("undefined".to_string()),
                Ok(v) => match v.as_string() {
                    Some(s) => s.to_string().map_err(|e| PacError::Engine(e.to_string())),
                    None => Ok(describe(&v)),
                },
                Err(e) => {
                    Err(
                        engine.classify(e, EVALUATION, |message, line| PacError::Exception {
                            function: "expression".into(),
                            message,
                            line,
                        }),
                    )
                }
            }
        })
    }

    /// Messages the script passed to `alert()` during the last evaluation (at most 100).
    pub fn take_alerts(&mut self) -> Vec<String> {
        match &self.engine {
            Some(e) => std::mem::take(&mut e.state.borrow_mut().alerts),
            None => Vec::new(),
        }
    }

    fn run<T>(
        &mut self,
        opts: &EvalOptions,
        f: impl FnOnce(&Engine, Ctx) -> Result<T, PacError>,
    ) -> Result<T, PacError> {
        if self.engine.is_none() {
            self.engine = Some(Engine::build(&self.source, &self.limits)?);
        }
        let Some(engine) = self.engine.as_ref() else {
            return Err(PacError::Engine("no engine".into()));
        };
        let deadline = Instant::now() + self.limits.eval_timeout;
        *engine.state.borrow_mut() = EvalState::new(opts, Some(deadline));
        engine.deadline.set(Some(deadline));
        engine.interrupted.set(false);
        let result = engine.ctx.with(|ctx| f(engine, ctx));
        engine.deadline.set(None);
        let result = result.map_err(|e| engine.out_of_memory_check(e, EVALUATION));
        if matches!(
            result,
            Err(PacError::Timeout { .. } | PacError::OutOfMemory { .. } | PacError::Engine(_))
        ) {
            // Rebuilt lazily by the next call.
            self.engine = None;
        }
        result
    }
}

/// A short description of a non-string result, for error messages.
fn describe(v: &Value) -> String {
    if v.is_undefined() {
        "undefined".into()
    } else if v.is_null() {
        "null".into()
    } else if let Some(b) = v.as_bool() {
        format!("the boolean {b}")
    } else if let Some(n) = v.as_number() {
        format!("the number {n}")
    } else {
        format!("a value of type {}", v.type_name())
    }
}

impl Engine {
    fn build(source: &str, limits: &Limits) -> Result<Engine, PacError> {
        let engine_err = |e: rquickjs::Error| PacError::Engine(e.to_string());
        let rt = Runtime::new().map_err(engine_err)?;
        rt.set_memory_limit(limits.memory_bytes);
        rt.set_max_stack_size(limits.stack_bytes);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let interrupted = Rc::new(Cell::new(false));
        {
            let deadline = Rc::clone(&deadline);
            let interrupted = Rc::clone(&interrupted);
            rt.set_interrupt_handler(Some(Box::new(move || match deadline.get() {
                Some(d) if Instant::now() >= d => {
                    interrupted.set(true);
                    true
                }
                _ => false,
            })));
        }
        let ctx = Context::full(&rt).map_err(engine_err)?;
        let state = Rc::new(RefCell::new(EvalState::new(&EvalOptions::default(), None)));
        let mut engine = Engine {
            ctx,
            rt,
            state,
            deadline,
            interrupted,
            entry: "FindProxyForURL",
            limits: limits.clone(),
        };

        engine
            .deadline
            .set(Some(Instant::now() + limits.load_timeout));
        let loaded = engine.ctx.with(|ctx| -> Result<&'static str, PacError> {
            engine.install_natives(&ctx).map_err(engine_err)?;
            let prelude: rquickjs::Result<Value> =
                ctx.eval_with_options(PRELUDE, eval_options("pac-prelude.js"));
            prelude
                .catch(&ctx)
                .map_err(|e| PacError::Engine(format!("the helper prelude failed: {e}")))?;
            let run: rquickjs::Result<Value> =
                ctx.eval_with_options(source, eval_options(SCRIPT_NAME));
            if let Err(e) = run.catch(&ctx) {
                return Err(engine.classify(e, LOADING, |message, line| {
                    if message.starts_with("SyntaxError") {
                        PacError::Syntax { message, line }
                    } else {
                        PacError::Load { message, line }
                    }
                }));
            }
            let globals = ctx.globals();
            for name in ["FindProxyForURLEx", "FindProxyForURL"] {
                let v: Value = globals.get(name).map_err(engine_err)?;
                if v.is_function() {
                    return Ok(name);
                }
            }
            Err(PacError::NoEntryPoint)
        });
        engine.deadline.set(None);
        engine.entry = loaded.map_err(|e| engine.out_of_memory_check(e, LOADING))?;
        Ok(engine)
    }

    /// Turns a caught JavaScript error into a [`PacError`]: the interrupt and the memory limit
    /// first, then exceptions with their message and line.
    fn classify(
        &self,
        e: CaughtError,
        phase: &'static str,
        exception: impl FnOnce(String, Option<u32>) -> PacError,
    ) -> PacError {
        if self.interrupted.get() {
            let limit = if phase == LOADING {
                self.limits.load_timeout
            } else {
                self.limits.eval_timeout
            };
            return PacError::Timeout { limit, phase };
        }
        let (message, line) = match &e {
            CaughtError::Exception(ex) => {
                let name: Option<String> = ex.get::<_, Option<String>>("name").ok().flatten();
                let msg = ex.message().unwrap_or_default();
                let text = match name {
                    Some(n) if !n.is_empty() => format!("{n}: {msg}"),
                    _ => msg,
                };
                let line = ex.stack().as_deref().and_then(script_line).or_else(|| {
                    ex.get::<_, Option<f64>>("lineNumber")
                        .ok()
                        .flatten()
                        .map(|l| l as u32)
                });
                (text, line)
            }
            CaughtError::Value(v) => {
                let text = v
                    .as_string()
                    .and_then(|s| s.to_string().ok())
                    .unwrap_or_else(|| describe(v));
                (format!("uncaught {text}"), None)
            }
            CaughtError::Error(rquickjs::Error::Allocation) => {
                return PacError::OutOfMemory {
                    limit: self.limits.memory_bytes,
                    phase,
                };
            }
            CaughtError::Error(other) => (other.to_string(), None),
        };
        if message.contains("out of memory") {
            return PacError::OutOfMemory {
                limit: self.limits.memory_bytes,
                phase,
            };
        }
        exception(message, line)
    }

    /// QuickJS throws `null` when it cannot even allocate the exception; recognise that case by
    /// the heap being at its limit.
    fn out_of_memory_check(&self, e: PacError, phase: &'static str) -> PacError {
        let thrown_null = matches!(&e, PacError::Load { message, .. } | PacError::Exception { message, .. } if message == "uncaught null");
        if thrown_null {
            let usage = self.rt.memory_usage();
            let used = usize::try_from(usage.malloc_size).unwrap_or(usize::MAX);
            if used >= self.limits.memory_bytes / 4 * 3 {
                return PacError::OutOfMemory {
                    limit: self.limits.memory_bytes,
                    phase,
                };
            }
        }
        e
    }

    fn install_natives<'js>(&self, ctx: &Ctx<'js>) -> rquickjs::Result<()> {
        let n = Object::new(ctx.clone())?;
        n.set(
            "isIpv6",
            Function::new(ctx.clone(), |host: String| host.parse::<Ipv6Addr>().is_ok())?,
        )?;

        let st = Rc::clone(&self.state);
        n.set(
            "isInNet",
            Function::new(
                ctx.clone(),
                move |host: String, pattern: String, mask: String| {
                    // As browsers do: a malformed pattern or mask is false before any lookup.
                    if helpers::parse_dotted_quad(&pattern).is_none()
                        || helpers::parse_dotted_quad(&mask).is_none()
                    {
                        return false;
                    }
                    let addr = match helpers::parse_dotted_quad(&host) {
                        Some(a) => Some(a),
                        None => st
                            .borrow_mut()
                            .lookup(&host)
                            .into_iter()
                            .find_map(|ip| match ip {
                                IpAddr::V4(v4) => Some(v4),
                                IpAddr::V6(_) => None,
                            }),
                    };
                    addr.is_some_and(|a| helpers::is_in_net_v4(a, &pattern, &mask))
                },
            )?,
        )?;

        let st = Rc::clone(&self.state);
        n.set(
            "dnsResolve",
            Function::new(ctx.clone(), move |host: String| -> Option<String> {
                st.borrow_mut()
                    .lookup(&host)
                    .into_iter()
                    .find(IpAddr::is_ipv4)
                    .map(|ip| ip.to_string())
            })?,
        )?;

        let st = Rc::clone(&self.state);
        n.set(
            "dnsResolveEx",
            Function::new(ctx.clone(), move |host: String| -> String {
                join(&st.borrow_mut().lookup(&host))
            })?,
        )?;

        let st = Rc::clone(&self.state);
        n.set(
            "myIpAddress",
            Function::new(ctx.clone(), move || -> String {
                let ips = st.borrow_mut().my_ips();
                ips.iter()
                    .find(|ip| ip.is_ipv4())
                    .or(ips.first())
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|| "127.0.0.1".into())
            })?,
        )?;

        let st = Rc::clone(&self.state);
        n.set(
            "myIpAddressEx",
            Function::new(ctx.clone(), move || -> String {
                join(&st.borrow_mut().my_ips())
            })?,
        )?;

        n.set(
            "isInNetEx",
            Function::new(ctx.clone(), |ip: String, prefix: String| {
                helpers::is_in_net_ex(&ip, &prefix)
            })?,
        )?;
        n.set(
            "sortIpAddressList",
            Function::new(ctx.clone(), |ctx: Ctx<'js>, list: String| -> Value<'js> {
                match helpers::sort_ip_address_list(&list) {
                    Some(s) => rquickjs::String::from_str(ctx.clone(), &s)
                        .map(|s| s.into_value())
                        .unwrap_or_else(|_| Value::new_bool(ctx, false)),
                    None => Value::new_bool(ctx, false),
                }
            })?,
        )?;

        let st = Rc::clone(&self.state);
        n.set(
            "clock",
            Function::new(
                ctx.clone(),
                move |which: i32, tz_minutes: f64, args: Vec<Value<'js>>| -> bool {
                    let args: Vec<Arg> = args.iter().map(to_arg).collect();
                    let now = match st.borrow().clock {
                        Clock::Fixed(at) => at,
                        Clock::System => {
                            let offset = UtcOffset::from_whole_seconds((tz_minutes * 60.0) as i32)
                                .unwrap_or(UtcOffset::UTC);
                            OffsetDateTime::now_utc().to_offset(offset)
                        }
                    };
                    let m = Moment::new(now);
                    match which {
                        0 => helpers::weekday_range(&args, &m),
                        1 => helpers::date_range(&args, &m),
                        _ => helpers::time_range(&args, &m),
                    }
                },
            )?,
        )?;

        let st = Rc::clone(&self.state);
        n.set(
            "alert",
            Function::new(ctx.clone(), move |message: String| {
                let mut s = st.borrow_mut();
                if s.alerts.len() < 100 {
                    s.alerts.push(message.chars().take(4096).collect());
                }
            })?,
        )?;
        ctx.globals().set("__uplink_native", n)
    }
}

fn join(ips: &[IpAddr]) -> String {
    let parts: Vec<String> = ips.iter().map(ToString::to_string).collect();
    parts.join(";")
}

fn to_arg(v: &Value) -> Arg {
    if let Some(n) = v.as_number() {
        Arg::Num(n)
    } else if let Some(s) = v.as_string().and_then(|s| s.to_string().ok()) {
        Arg::Str(s)
    } else {
        Arg::Other
    }
}

fn eval_options(name: &str) -> rquickjs::context::EvalOptions {
    let mut o = rquickjs::context::EvalOptions::default();
    o.global = true;
    o.strict = false;
    o.filename = Some(name.to_string());
    o
}

/// The first line number of the PAC script itself in a QuickJS stack trace
/// (`"    at FindProxyForURL (pac.js:3:11)"`).
fn script_line(stack: &str) -> Option<u32> {
    let needle = format!("{SCRIPT_NAME}:");
    let at = stack.find(&needle)? + needle.len();
    let digits: String = stack[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
