//! `tcpipe ctl`: a thin client of the admin API. Each command is one
//! request; the answer is printed as a table (or as the JSON itself with
//! `--json`). Exit codes: 0 done, 1 refused by the forwarder (its message
//! printed) or no answer, 2 usage.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use super::client::{self, Client};
use super::table::{render, Column, Show};
use crate::admin::call::{percent_encode, TargetRef, MAX_WAIT};
use crate::config::{format_duration, parse_duration, read_token, AdminAddress};

/// How long an answer may take, beyond a wait's own timeout.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Parser, Debug)]
#[command(
    name = "tcpipe ctl",
    about = "Asks a running tcpipe through its admin API (--admin).",
    disable_version_flag = true,
    disable_help_subcommand = true,
    arg_required_else_help = false
)]
struct Ctl {
    /// The admin endpoint: unix:/PATH or HOST:PORT [default: $TCPIPE_ADMIN].
    #[arg(long, global = true, value_name = "unix:PATH|ADDR")]
    admin: Option<String>,

    /// The bearer token's file, for a TCP endpoint [default:
    /// $TCPIPE_ADMIN_TOKEN_FILE].
    #[arg(long, global = true, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,

    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Lists routes, targets or live pipes.
    #[command(arg_required_else_help = false)]
    Show {
        #[command(subcommand)]
        what: ShowWhat,
    },
    /// Sets a target's state or weight.
    #[command(arg_required_else_help = false)]
    Set {
        #[command(subcommand)]
        what: SetWhat,
    },
    /// Resets a pipe, or every pipe of a route or target.
    #[command(arg_required_else_help = false)]
    Kill {
        #[command(subcommand)]
        what: KillWhat,
    },
    /// Waits until a target has no live pipe.
    #[command(arg_required_else_help = false)]
    Wait {
        #[command(subcommand)]
        what: WaitWhat,
    },
    /// Reloads the config file, as SIGHUP does.
    Reload,
    /// Hands every listener and live connection to a new process of the
    /// binary, as SIGUSR2 does; the running one then exits.
    Upgrade,
}

#[derive(Subcommand, Debug)]
enum ShowWhat {
    /// Every route.
    Routes,
    /// Every target: state, weight, health, pipes, bytes.
    Targets {
        /// Only this route's.
        #[arg(long, value_name = "ROUTE")]
        route: Option<String>,
    },
    /// Live pipes.
    Pipes {
        #[command(flatten)]
        filter: Filter,
    },
}

#[derive(Args, Debug)]
#[group(multiple = false)]
struct Filter {
    /// Only this route's.
    #[arg(long, value_name = "ROUTE")]
    route: Option<String>,
    /// Only this target's.
    #[arg(long, value_name = "ROUTE/TARGET", value_parser = target_ref)]
    target: Option<TargetRef>,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct RequiredFilter {
    /// Every pipe of this route.
    #[arg(long, value_name = "ROUTE")]
    route: Option<String>,
    /// Every pipe of this target.
    #[arg(long, value_name = "ROUTE/TARGET", value_parser = target_ref)]
    target: Option<TargetRef>,
}

#[derive(Subcommand, Debug)]
enum SetWhat {
    /// A target's state or weight: `set target web/app1 state drain`.
    #[command(arg_required_else_help = false)]
    Target {
        /// ROUTE/TARGET, as `show targets` names it.
        #[arg(value_parser = target_ref, value_name = "ROUTE/TARGET")]
        target: TargetRef,
        #[command(subcommand)]
        setting: Setting,
    },
}

#[derive(Subcommand, Debug)]
enum Setting {
    /// ready, drain (no new pipes) or maint (no new pipes, no probes).
    State {
        #[arg(value_enum)]
        state: StateArg,
    },
    /// Its share of new pipes (0: none).
    Weight {
        #[arg(value_parser = super::count::<u32>, allow_negative_numbers = true)]
        weight: u32,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StateArg {
    Ready,
    Drain,
    Maint,
}

#[derive(Subcommand, Debug)]
enum KillWhat {
    /// One pipe, by the id `show pipes` gives.
    Pipe {
        #[arg(value_parser = super::count::<u64>, allow_negative_numbers = true)]
        id: u64,
    },
    /// Every pipe of a route or a target.
    Pipes {
        #[command(flatten)]
        filter: RequiredFilter,
    },
}

#[derive(Subcommand, Debug)]
enum WaitWhat {
    /// Until the target has no live pipe; exit 1 if some remain at the timeout.
    Empty {
        #[arg(value_parser = target_ref, value_name = "ROUTE/TARGET")]
        target: TargetRef,
        /// How long to wait at most (up to 24h).
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = wait_timeout)]
        timeout: Duration,
    },
}

fn target_ref(text: &str) -> Result<TargetRef, String> {
    TargetRef::parse(text).ok_or_else(|| "expected ROUTE/TARGET, as in web/10.0.0.1:80".into())
}

fn wait_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text)?.unwrap_or(Duration::ZERO);
    if timeout > MAX_WAIT {
        return Err("at most 24h".into());
    }
    Ok(timeout)
}

/// Whether the command line is `tcpipe ctl ...`.
pub fn is_ctl(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|arg| arg == "ctl")
}

/// Runs `tcpipe ctl ...` (program name first) and gives its exit code.
pub fn main(args: &[OsString]) -> u8 {
    let ctl_args =
        std::iter::once(OsString::from("tcpipe ctl")).chain(args.iter().skip(2).cloned());
    let ctl = match Ctl::try_parse_from(ctl_args) {
        Ok(ctl) => ctl,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            print!("{}", e.render());
            return if e.kind() == ErrorKind::DisplayHelp {
                0
            } else {
                2
            };
        }
        Err(e) => {
            let mut line = super::exit::usage_line(&e, args);
            if let Some(ContextValue::Strings(commands)) = e.get(ContextKind::ValidSubcommand) {
                line.push_str(&format!(" [commands: {}]", commands.join(", ")));
            }
            eprintln!("tcpipe: ctl: {line}");
            return 2;
        }
    };
    let client = match ctl.client() {
        Ok(client) => client,
        Err(line) => {
            eprintln!("tcpipe: ctl: {line}");
            return 2;
        }
    };
    ctl.run(&client)
}

/// A request: method, path, body, and how long its answer may take.
struct Request {
    method: &'static str,
    path: String,
    body: Option<Value>,
    patience: Duration,
}

impl Ctl {
    fn client(&self) -> Result<Client, String> {
        let (env_admin, env_token) = client::from_env();
        let (text, from) = match (&self.admin, env_admin) {
            (Some(text), _) => (text.clone(), "--admin"),
            (None, Some(text)) => (text, "TCPIPE_ADMIN"),
            (None, None) => return Err(
                "no admin endpoint: give --admin unix:/PATH (or HOST:PORT), or set TCPIPE_ADMIN"
                    .into(),
            ),
        };
        let address = AdminAddress::parse(&text)
            .map_err(|why| format!("invalid value '{text}' for '{from}': {why}"))?;
        let token_file = self.admin_token_file.clone().or(env_token);
        let token = match (&address, token_file) {
            (_, Some(file)) => Some(read_token(&file).map_err(|why| {
                format!(
                    "invalid value '{}' for '--admin-token-file': {why}",
                    file.display()
                )
            })?),
            (AdminAddress::Tcp(_), None) => {
                return Err(format!(
                    "{text} is a TCP address: give --admin-token-file (or TCPIPE_ADMIN_TOKEN_FILE)"
                ))
            }
            (AdminAddress::Unix(_), None) => None,
        };
        Ok(Client { address, token })
    }

    fn request(&self) -> Request {
        let get = |path: String| Request {
            method: "GET",
            path,
            body: None,
            patience: PATIENCE,
        };
        let target_path = |at: &TargetRef, action: &str| {
            format!(
                "/v1/targets/{}/{}/{action}",
                percent_encode(&at.route),
                percent_encode(&at.target)
            )
        };
        match &self.command {
            Command::Show { what } => match what {
                ShowWhat::Routes => get("/v1/routes".into()),
                ShowWhat::Targets { route: None } => get("/v1/targets".into()),
                ShowWhat::Targets { route: Some(route) } => {
                    get(format!("/v1/targets?route={}", percent_encode(route)))
                }
                ShowWhat::Pipes { filter } => get(match (&filter.route, &filter.target) {
                    (Some(route), _) => format!("/v1/pipes?route={}", percent_encode(route)),
                    (_, Some(at)) => {
                        format!("/v1/pipes?target={}", percent_encode(&at.to_string()))
                    }
                    (None, None) => "/v1/pipes".into(),
                }),
            },
            Command::Set {
                what: SetWhat::Target { target, setting },
            } => {
                let (action, body) = match setting {
                    Setting::State { state } => {
                        let state = match state {
                            StateArg::Ready => "ready",
                            StateArg::Drain => "drain",
                            StateArg::Maint => "maint",
                        };
                        ("state", json!({ "state": state }))
                    }
                    Setting::Weight { weight } => ("weight", json!({ "weight": weight })),
                };
                Request {
                    method: "PUT",
                    path: target_path(target, action),
                    body: Some(body),
                    patience: PATIENCE,
                }
            }
            Command::Kill { what } => match what {
                KillWhat::Pipe { id } => Request {
                    method: "DELETE",
                    path: format!("/v1/pipes/{id}"),
                    body: None,
                    patience: PATIENCE,
                },
                KillWhat::Pipes { filter } => {
                    let body = match (&filter.route, &filter.target) {
                        (Some(route), _) => json!({ "route": route }),
                        (_, Some(at)) => json!({ "target": at.to_string() }),
                        // clap requires one.
                        (None, None) => json!({}),
                    };
                    Request {
                        method: "POST",
                        path: "/v1/pipes/kill".into(),
                        body: Some(body),
                        patience: PATIENCE,
                    }
                }
            },
            Command::Wait {
                what: WaitWhat::Empty { target, timeout },
            } => Request {
                method: "POST",
                path: target_path(target, "wait-empty"),
                body: Some(json!({ "timeout": format_duration(Some(*timeout)) })),
                patience: *timeout + PATIENCE,
            },
            Command::Reload => Request {
                method: "POST",
                path: "/v1/reload".into(),
                body: None,
                patience: PATIENCE,
            },
            // The new process has 10 s to confirm, and may be killed after.
            Command::Upgrade => Request {
                method: "POST",
                path: "/v1/upgrade".into(),
                body: None,
                patience: PATIENCE + Duration::from_secs(15),
            },
        }
    }

    fn run(&self, client: &Client) -> u8 {
        let request = self.request();
        let body = request.body.as_ref().map(Value::to_string);
        let answer = match client.ask(
            request.method,
            &request.path,
            body.as_deref(),
            request.patience,
        ) {
            Ok(answer) => answer,
            Err(e) => {
                eprintln!("tcpipe: ctl: {e}");
                return 1;
            }
        };
        let parsed: Option<Value> = serde_json::from_slice(&answer.body).ok();
        if self.json {
            print!("{}", String::from_utf8_lossy(&answer.body));
        }
        if !(200..300).contains(&answer.status) {
            let message = parsed
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(Value::as_str)
                .map_or_else(
                    || String::from_utf8_lossy(&answer.body).trim().to_string(),
                    str::to_string,
                );
            eprintln!("tcpipe: ctl: {message} (HTTP {})", answer.status);
            return 1;
        }
        if !self.json {
            let Some(value) = parsed else {
                eprintln!("tcpipe: ctl: the admin endpoint's answer is not JSON");
                return 1;
            };
            print!("{}", self.text(&value));
        }
        0
    }

    /// The answer as a person reads it.
    fn text(&self, value: &Value) -> String {
        let list = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let str_of = |key: &str| {
            value.get(key).map_or_else(String::new, |v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        match &self.command {
            Command::Show {
                what: ShowWhat::Routes,
            } => render(ROUTE_COLUMNS, &list("routes")),
            Command::Show {
                what: ShowWhat::Targets { .. },
            } => render(TARGET_COLUMNS, &list("targets")),
            Command::Show {
                what: ShowWhat::Pipes { .. },
            } => render(PIPE_COLUMNS, &list("pipes")),
            Command::Set {
                what: SetWhat::Target { target, setting },
            } => match setting {
                Setting::State { .. } => format!("{target}: state {}\n", str_of("state")),
                Setting::Weight { .. } => format!("{target}: weight {}\n", str_of("weight")),
            },
            Command::Kill { what } => {
                let killed = value.get("killed").and_then(Value::as_u64).unwrap_or(0);
                match what {
                    KillWhat::Pipe { id } => format!("pipe {id}: reset\n"),
                    KillWhat::Pipes { .. } => {
                        let pipes = if killed == 1 { "pipe" } else { "pipes" };
                        format!("{killed} {pipes} reset\n")
                    }
                }
            }
            Command::Wait {
                what: WaitWhat::Empty { target, .. },
            } => {
                format!("{target}: no live pipe\n")
            }
            Command::Upgrade => format!(
                "upgraded: pid {} took over {} listeners and {} connections in {} ms\n",
                str_of("pid"),
                str_of("listeners"),
                str_of("connections"),
                str_of("took_ms")
            ),
            Command::Reload => {
                let mut out = String::from("reloaded\n");
                for line in list("summary") {
                    out.push_str(&format!("  {}\n", line.as_str().unwrap_or_default()));
                }
                out
            }
        }
    }
}

/// A column of a table: its header, the JSON key it shows, and how.
const fn column(header: &'static str, key: &'static str, show: Show) -> Column {
    Column { header, key, show }
}

const ROUTE_COLUMNS: &[Column] = &[
    column("ROUTE", "name", Show::Text),
    column("LISTEN", "listen", Show::List),
    column("BALANCE", "balance", Show::Text),
    column("TARGETS", "targets", Show::List),
    column("LIVE", "live_pipes", Show::Number),
    column("TOTAL", "total_pipes", Show::Number),
];

const TARGET_COLUMNS: &[Column] = &[
    column("ROUTE", "route", Show::Text),
    column("TARGET", "name", Show::Text),
    column("ADDRESS", "address", Show::Text),
    column("STATE", "state", Show::Text),
    column("WEIGHT", "weight", Show::Number),
    column("BACKUP", "backup", Show::Flag),
    column("HEALTH", "healthy", Show::Health),
    column("LIVE", "live_pipes", Show::Number),
    column("TOTAL", "total_pipes", Show::Number),
    column("TO-TARGET", "bytes_to_target", Show::Number),
    column("TO-CLIENT", "bytes_to_client", Show::Number),
    column("CONNECT-FAILS", "connect_failures", Show::Number),
];

const PIPE_COLUMNS: &[Column] = &[
    column("ID", "id", Show::Number),
    column("ROUTE", "route", Show::Text),
    column("CLIENT", "client", Show::Text),
    column("TARGET", "target", Show::Text),
    column("AGE", "age_seconds", Show::Age),
    column("TO-TARGET", "bytes_to_target", Show::Number),
    column("TO-CLIENT", "bytes_to_client", Show::Number),
    column("STAGE", "stage", Show::Text),
    column("PAUSED", "paused", Show::Flag),
];
