//! The file's tables as serde reads them, and how they become a
//! [`Config`]: each route's options from its `[[route]]`, then from
//! `[defaults]`, then the built-in defaults; sizes, durations and counts
//! written as the flags take them.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::file::Problem;
use super::values::{
    parse_address, parse_connection_rate, parse_duration, parse_size, ConnectionRate,
};
use super::{
    AdminAddress, Balance, Config, LogDestination, LogFormat, Match, Naming, Overrides, Protocol,
    Route, Splice, Target,
};
use crate::acl::Cidr;
use crate::proxy_protocol::ProxyVersion;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct Document {
    #[serde(default)]
    global: Global,
    #[serde(default)]
    defaults: Section,
    #[serde(default, rename = "route")]
    routes: Vec<Section>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct Global {
    max_connections: Option<Count<usize>>,
    drain_timeout: Option<DurationSetting>,
    resolve_interval: Option<DurationSetting>,
    metrics: Option<String>,
    access_log: Option<String>,
    log_format: Option<LogFormat>,
    access_log_opens: Option<bool>,
    workers: Option<WorkersSetting>,
    admin: Option<String>,
    admin_token_file: Option<std::path::PathBuf>,
    upgrade_binary: Option<std::path::PathBuf>,
}

/// A `[[route]]`, or `[defaults]` (which has no name, listen or targets).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct Section {
    name: Option<String>,
    listen: Option<OneOrMany>,
    /// Read as written and checked in [`target_entries`], so that a
    /// problem names the entry and key it is in.
    targets: Option<toml::Value>,
    balance: Option<Balance>,
    retries: Option<Count<usize>>,
    fail_threshold: Option<Count<u32>>,
    cooldown: Option<DurationSetting>,
    health_interval: Option<DurationSetting>,
    pool: Option<Count<usize>>,
    pool_max_idle: Option<DurationSetting>,
    buffer_size: Option<SizeSetting>,
    low_water: Option<SizeSetting>,
    connect_timeout: Option<DurationSetting>,
    idle_timeout: Option<DurationSetting>,
    half_close_timeout: Option<DurationSetting>,
    keepalive: Option<DurationSetting>,
    max_connections: Option<Count<usize>>,
    send_proxy: Option<ProxyVersion>,
    accept_proxy: Option<bool>,
    proxy_timeout: Option<DurationSetting>,
    allow: Option<Blocks>,
    deny: Option<Blocks>,
    max_connections_per_source: Option<Count<usize>>,
    max_connection_rate_per_source: Option<RateSetting>,
    upload_rate: Option<SizeSetting>,
    download_rate: Option<SizeSetting>,
    route_upload_rate: Option<SizeSetting>,
    route_download_rate: Option<SizeSetting>,
    rate_burst: Option<SizeSetting>,
    splice: Option<Splice>,
    #[serde(rename = "match")]
    matching: Option<MatchTable>,
    inspect_timeout: Option<DurationSetting>,
}

/// A route's `match` table.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct MatchTable {
    sni: Option<Vec<String>>,
    alpn: Option<Vec<String>>,
    protocol: Option<Protocol>,
}

impl Document {
    pub(super) fn into_config(self, overrides: &Overrides) -> Result<Config, Problem> {
        for (key, present) in [
            ("name", self.defaults.name.is_some()),
            ("listen", self.defaults.listen.is_some()),
            ("targets", self.defaults.targets.is_some()),
            ("match", self.defaults.matching.is_some()),
        ] {
            if present {
                return Err(Problem::at_key(
                    format!("defaults.{key}"),
                    "only a [[route]] has this key",
                ));
            }
        }
        let routes = self
            .routes
            .iter()
            .enumerate()
            .map(|(index, section)| section.to_route(index, &self.defaults))
            .collect::<Result<Vec<Route>, Problem>>()?;
        if routes.is_empty() {
            return Err(Problem::at_key("route", "give at least one route"));
        }
        let mut config = Config::with_routes(routes);
        if let Some(Count(max)) = self.global.max_connections {
            config.max_connections = max;
        }
        if let Some(DurationSetting(drain)) = self.global.drain_timeout {
            config.drain_timeout = drain;
        }
        if let Some(DurationSetting(interval)) = self.global.resolve_interval {
            config.resolve_interval = interval;
        }
        if let Some(text) = &self.global.metrics {
            config.metrics = Some(parse_address(text).map_err(|reason| {
                Problem::at_key(
                    "global.metrics",
                    format!("invalid address '{text}': {reason}"),
                )
            })?);
        }
        if let Some(text) = &self.global.access_log {
            config.access_log.destination = LogDestination::parse(text).map_err(|reason| {
                Problem::at_key(
                    "global.access-log",
                    format!("invalid value '{text}': {reason}"),
                )
            })?;
        }
        if let Some(format) = self.global.log_format {
            config.access_log.format = format;
        }
        if let Some(opens) = self.global.access_log_opens {
            config.access_log.opens = opens;
        }
        if let Some(workers) = &self.global.workers {
            config.workers = workers.count().map_err(|reason| {
                Problem::at_key(
                    "global.workers",
                    format!("invalid value '{workers}': {reason}"),
                )
            })?;
        }
        if let Some(text) = &self.global.admin {
            config.admin = Some(AdminAddress::parse(text).map_err(|reason| {
                Problem::at_key(
                    "global.admin",
                    format!("invalid address '{text}': {reason}"),
                )
            })?);
        }
        config.admin_token_file = self.global.admin_token_file.clone();
        if let Some(binary) = &self.global.upgrade_binary {
            config.upgrade_binary = Some(binary.clone());
        }
        overrides.apply(&mut config);
        config
            .validate_as(Naming::File)
            .map_err(|e| overrides.rename(e))?;
        Ok(config)
    }
}

impl Section {
    /// The route this section describes, every option it leaves out taken
    /// from `[defaults]`, then from the built-in default.
    fn to_route(&self, index: usize, defaults: &Section) -> Result<Route, Problem> {
        let required =
            |key: &str| Problem::at_key(format!("route[{index}]"), format!("missing key '{key}'"));
        let name = self.name.clone().ok_or_else(|| required("name"))?;
        let listen = self.listen.as_ref().ok_or_else(|| required("listen"))?;
        let targets = self.targets.as_ref().ok_or_else(|| required("targets"))?;
        let listen = resolve_all(index, "listen", listen)?;
        let entries = target_entries(index, targets)?;
        let addresses = OneOrMany(entries.iter().map(|t| t.name.clone()).collect());
        let targets: Vec<Target> = entries
            .into_iter()
            .zip(resolve_all(index, "targets", &addresses)?)
            .map(|(mut target, addr)| {
                target.addr = addr;
                target
            })
            .collect();
        let (Some(&first_listen), Some(first_target)) = (listen.first(), targets.first()) else {
            let key = if listen.is_empty() {
                "listen"
            } else {
                "targets"
            };
            return Err(Problem::at_key(
                format!("route[{index}].{key}"),
                "give at least one address",
            ));
        };
        let mut route = Route::new(name, first_listen, first_target.addr);
        route.listen = listen;
        route.targets = targets;

        macro_rules! option {
            ($field:ident) => {
                self.$field.clone().or_else(|| defaults.$field.clone())
            };
        }
        if let Some(balance) = option!(balance) {
            route.balance = balance;
        }
        if let Some(splice) = option!(splice) {
            route.splice = splice;
        }
        route.retries = option!(retries).map(|Count(n)| n).or(route.retries);
        if let Some(Count(threshold)) = option!(fail_threshold) {
            route.fail_threshold = threshold;
        }
        if let Some(Count(pool)) = option!(pool) {
            route.pool = pool;
        }
        route.max_connections = option!(max_connections)
            .map(|Count(n)| n)
            .or(route.max_connections);
        route.max_connections_per_source = option!(max_connections_per_source)
            .map(|Count(n)| n)
            .or(route.max_connections_per_source);
        route.max_connection_rate_per_source = option!(max_connection_rate_per_source)
            .map(|RateSetting(rate)| rate)
            .or(route.max_connection_rate_per_source);
        for (setting, field) in [
            (option!(upload_rate), &mut route.upload_rate),
            (option!(download_rate), &mut route.download_rate),
            (option!(route_upload_rate), &mut route.route_upload_rate),
            (option!(route_download_rate), &mut route.route_download_rate),
            (option!(rate_burst), &mut route.rate_burst),
        ] {
            if let Some(SizeSetting(size)) = setting {
                *field = Some(size);
            }
        }
        route.send_proxy = option!(send_proxy).or(route.send_proxy);
        if let Some(accept) = option!(accept_proxy) {
            route.accept_proxy = accept;
        }
        if let Some(Blocks(allow)) = option!(allow) {
            route.allow = allow;
        }
        if let Some(Blocks(deny)) = option!(deny) {
            route.deny = deny;
        }
        if let Some(SizeSetting(size)) = option!(buffer_size) {
            route.buffer_size = size;
            route.low_water = size / 2;
        }
        if let Some(SizeSetting(size)) = option!(low_water) {
            route.low_water = size;
        }
        for (setting, field) in [
            (option!(cooldown), &mut route.cooldown),
            (option!(health_interval), &mut route.health_interval),
            (option!(connect_timeout), &mut route.connect_timeout),
            (option!(idle_timeout), &mut route.idle_timeout),
            (option!(half_close_timeout), &mut route.half_close_timeout),
            (option!(keepalive), &mut route.keepalive),
            (option!(proxy_timeout), &mut route.proxy_timeout),
            (option!(inspect_timeout), &mut route.inspect_timeout),
        ] {
            if let Some(DurationSetting(duration)) = setting {
                *field = duration;
            }
        }
        if let Some(table) = &self.matching {
            route.matching = Match {
                // Server names are case-insensitive; hellos are read in
                // lowercase.
                sni: (table.sni.iter().flatten())
                    .map(|name| name.to_ascii_lowercase())
                    .collect(),
                alpn: table.alpn.clone().unwrap_or_default(),
                protocol: table.protocol,
            };
        }
        if let Some(DurationSetting(idle)) = option!(pool_max_idle) {
            route.pool_max_idle = idle.unwrap_or(Duration::ZERO);
        }
        Ok(route)
    }
}

/// A route's `targets`: an address, or an array of addresses and tables
/// `{ address = "host:port", weight = N, backup = true }`. Each comes back
/// with its name, weight and backup flag, its address not resolved yet.
fn target_entries(index: usize, targets: &toml::Value) -> Result<Vec<Target>, Problem> {
    const FORMS: &str = "expected an address \"host:port\", a table \
        { address = \"host:port\", weight = 3, backup = true }, or an array of them";
    let unresolved: std::net::SocketAddr = ([0, 0, 0, 0], 0).into();
    let entry = |position: Option<usize>, value: &toml::Value| -> Result<Target, Problem> {
        let at = match position {
            Some(position) => format!("route[{index}].targets[{position}]"),
            None => format!("route[{index}].targets"),
        };
        let table = match value {
            toml::Value::String(address) => return Ok(Target::new(address.clone(), unresolved)),
            toml::Value::Table(table) => table,
            _ => return Err(Problem::at_key(at, FORMS)),
        };
        let mut target = Target::new(String::new(), unresolved);
        let mut address = None;
        for (key, value) in table {
            let key_at = format!("{at}.{key}");
            match (key.as_str(), value) {
                ("address", toml::Value::String(text)) => address = Some(text.clone()),
                ("address", other) => {
                    return Err(Problem::at_key(
                        key_at,
                        format!(
                            "invalid address {}: expected a string \"host:port\"",
                            written(other)
                        ),
                    ))
                }
                ("weight", toml::Value::Integer(n)) => {
                    target.weight = super::parse_weight(&n.to_string()).map_err(|reason| {
                        Problem::at_key(key_at, format!("invalid weight {n}: {reason}"))
                    })?;
                }
                ("weight", other) => {
                    return Err(Problem::at_key(
                        key_at,
                        format!(
                            "invalid weight {}: expected a whole number such as 3",
                            written(other)
                        ),
                    ))
                }
                ("backup", toml::Value::Boolean(backup)) => target.backup = *backup,
                ("backup", other) => {
                    return Err(Problem::at_key(
                        key_at,
                        format!("invalid value {}: expected true or false", written(other)),
                    ))
                }
                (unknown, _) => {
                    return Err(Problem::at_key(
                        key_at,
                        format!(
                            "unknown key `{unknown}` (a target takes address, weight and backup)"
                        ),
                    ))
                }
            }
        }
        target.name = address.ok_or_else(|| Problem::at_key(at, "missing key 'address'"))?;
        Ok(target)
    };
    match targets {
        toml::Value::Array(items) => (items.iter().enumerate())
            .map(|(position, value)| entry(Some(position), value))
            .collect(),
        toml::Value::Table(_) => Err(Problem::at_key(
            format!("route[{index}].targets"),
            "a single target table goes in an array: targets = [{ address = ... }]",
        )),
        one => entry(None, one).map(|target| vec![target]),
    }
}

/// A value as the file wrote it, for an error line (an array or a table by
/// its kind).
fn written(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => format!("{text:?}"),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(x) => x.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(_) => "(an array)".into(),
        other => format!("(a {})", other.type_str()),
    }
}

fn resolve_all(
    index: usize,
    key: &str,
    addresses: &OneOrMany,
) -> Result<Vec<std::net::SocketAddr>, Problem> {
    addresses
        .0
        .iter()
        .enumerate()
        .map(|(position, text)| {
            parse_address(text).map_err(|reason| {
                Problem::at_key(
                    format!("route[{index}].{key}[{position}]"),
                    format!("invalid address '{text}': {reason}"),
                )
            })
        })
        .collect()
}

/// A setting as written: text such as `"5s"` or `"64k"`, or a number.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a string such as \"5s\" or \"64k\", or a number"
)]
enum Written {
    Text(String),
    Number(i64),
}

/// A duration written as the flags take it: `"500ms"`, `"5s"`, `"0"`.
#[derive(Clone, Deserialize)]
#[serde(try_from = "Written")]
struct DurationSetting(Option<Duration>);

impl TryFrom<Written> for DurationSetting {
    type Error = String;

    fn try_from(written: Written) -> Result<DurationSetting, String> {
        match written {
            Written::Text(text) => parse_duration(&text)
                .map(DurationSetting)
                .map_err(|reason| format!("invalid duration '{text}': {reason}")),
            Written::Number(0) => Ok(DurationSetting(None)),
            Written::Number(n) => Err(format!(
                "invalid duration {n}: give a unit, as in \"{n}s\" or \"{n}ms\""
            )),
        }
    }
}

/// A count (`pool`, `retries`, ...), read as any integer so that a
/// negative one says so, not "expected usize".
#[derive(Clone, Copy, Deserialize)]
#[serde(try_from = "WrittenCount", bound(deserialize = "T: TryFrom<i64>"))]
struct Count<T>(T);

#[derive(Deserialize)]
#[serde(untagged, expecting = "expected a whole number such as 3")]
enum WrittenCount {
    Number(i64),
}

impl<T: TryFrom<i64>> TryFrom<WrittenCount> for Count<T> {
    type Error = String;

    fn try_from(written: WrittenCount) -> Result<Count<T>, String> {
        let WrittenCount::Number(n) = written;
        if n < 0 {
            return Err(format!("invalid count {n}: must not be negative"));
        }
        T::try_from(n)
            .map(Count)
            .map_err(|_| format!("invalid count {n}: too large"))
    }
}

/// `workers`: a number, or `"auto"`.
#[derive(Deserialize)]
#[serde(untagged, expecting = "expected a whole number such as 2, or \"auto\"")]
enum WorkersSetting {
    Number(i64),
    Text(String),
}

impl WorkersSetting {
    fn count(&self) -> Result<usize, String> {
        match self {
            WorkersSetting::Number(n) => super::parse_workers(&n.to_string()),
            WorkersSetting::Text(text) => super::parse_workers(text),
        }
    }
}

impl std::fmt::Display for WorkersSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkersSetting::Number(n) => write!(f, "{n}"),
            WorkersSetting::Text(text) => f.write_str(text),
        }
    }
}

/// A size written as the flags take it (`"64k"`), or a number of bytes.
#[derive(Clone, Deserialize)]
#[serde(try_from = "Written")]
struct SizeSetting(usize);

impl TryFrom<Written> for SizeSetting {
    type Error = String;

    fn try_from(written: Written) -> Result<SizeSetting, String> {
        match written {
            Written::Text(text) => parse_size(&text)
                .map(SizeSetting)
                .map_err(|reason| format!("invalid size '{text}': {reason}")),
            Written::Number(n) => usize::try_from(n)
                .map(SizeSetting)
                .map_err(|_| format!("invalid size {n}: must not be negative")),
        }
    }
}

/// A connection rate written as `"20/s"` or `"100/10s"`.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
struct RateSetting(ConnectionRate);

impl TryFrom<String> for RateSetting {
    type Error = String;

    fn try_from(text: String) -> Result<RateSetting, String> {
        parse_connection_rate(&text)
            .map(RateSetting)
            .map_err(|reason| format!("invalid rate '{text}': {reason}"))
    }
}

/// One address as a string, or several as an array of strings.
#[derive(Clone)]
struct OneOrMany(Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "an address \"host:port\" or an array of them")]
        enum Form {
            One(String),
            Many(Vec<String>),
        }
        Ok(OneOrMany(match Form::deserialize(deserializer)? {
            Form::One(one) => vec![one],
            Form::Many(many) => many,
        }))
    }
}

/// Address blocks: one as a string, or several as an array of strings.
#[derive(Clone, Deserialize)]
#[serde(try_from = "OneOrMany")]
struct Blocks(Vec<Cidr>);

impl TryFrom<OneOrMany> for Blocks {
    type Error = String;

    fn try_from(written: OneOrMany) -> Result<Blocks, String> {
        written
            .0
            .iter()
            .map(|text| {
                text.parse::<Cidr>()
                    .map_err(|reason| format!("invalid address block '{text}': {reason}"))
            })
            .collect::<Result<Vec<Cidr>, String>>()
            .map(Blocks)
    }
}
