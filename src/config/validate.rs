//! Validation: each route's settings on their own, then what no two
//! routes may share (names, listen addresses, the metrics port); the
//! admin endpoint's rules are in `admin`.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::{
    format_size, Config, ConfigError, Naming, Route, MAX_BUFFER_SIZE, MAX_ROUTE_NAME, MAX_WORKERS,
    MIN_BUFFER_SIZE,
};

impl Config {
    /// Checks every setting; errors name the setting as a config file does.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_as(Naming::File)
    }

    /// Checks every setting; errors name it the way `naming` says.
    pub fn validate_as(&self, naming: Naming) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            let key = naming.global_key("max-connections");
            return Err(ConfigError::new(key, "0", "must be at least 1"));
        }
        if self.workers == 0 || self.workers > MAX_WORKERS {
            return Err(ConfigError::new(
                naming.global_key("workers"),
                self.workers.to_string(),
                format!("must be between 1 and {MAX_WORKERS}, or auto (one per CPU)"),
            ));
        }
        let mut names = HashSet::new();
        for (index, route) in self.routes.iter().enumerate() {
            route.validate(index, naming)?;
            if !names.insert(route.name.as_str()) {
                return Err(ConfigError::new(
                    naming.route_key(index, "name"),
                    &route.name,
                    "another route has this name",
                ));
            }
        }
        self.check_listen_conflicts(naming)?;
        super::matching::check_shared(&self.routes, naming)?;
        self.check_metrics_address(naming)?;
        self.check_admin(naming)
    }

    /// The metrics endpoint cannot share a port with a route.
    fn check_metrics_address(&self, naming: Naming) -> Result<(), ConfigError> {
        let Some(metrics) = self.metrics else {
            return Ok(());
        };
        for route in &self.routes {
            if let Some(listen) = route
                .listen
                .iter()
                .find(|&&l| addresses_overlap(metrics, l))
            {
                return Err(ConfigError::new(
                    naming.global_key("metrics"),
                    metrics.to_string(),
                    format!("overlaps {listen}, where route '{}' listens", route.name),
                ));
            }
        }
        Ok(())
    }

    /// Two routes cannot share an address: the second could never bind it.
    /// `0.0.0.0` and `[::]` overlap every address of the same port. Port 0
    /// asks the kernel for a free port, so it never clashes. The very same
    /// address is one listener shared by the routes that list it, which
    /// `matching::check_shared` checks.
    fn check_listen_conflicts(&self, naming: Naming) -> Result<(), ConfigError> {
        let all: Vec<(usize, SocketAddr)> = self
            .routes
            .iter()
            .enumerate()
            .flat_map(|(index, route)| route.listen.iter().map(move |&addr| (index, addr)))
            .collect();
        for (position, &(index, addr)) in all.iter().enumerate() {
            let earlier = all[..position].iter().find(|&&(other, theirs)| {
                other != index && theirs != addr && addresses_overlap(addr, theirs)
            });
            if let Some(&(other, theirs)) = earlier {
                return Err(ConfigError::new(
                    naming.route_key(index, "listen"),
                    addr.to_string(),
                    format!(
                        "overlaps {theirs}, where route '{}' listens",
                        self.routes[other].name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether two listen addresses would fight over the same port.
pub(crate) fn addresses_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || b.port() != a.port() {
        return false;
    }
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

impl Route {
    fn validate(&self, index: usize, naming: Naming) -> Result<(), ConfigError> {
        let key = |name: &str| naming.route_key(index, name);
        if self.name.is_empty()
            || self.name.len() > MAX_ROUTE_NAME
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::new(
                key("name"),
                &self.name,
                format!("use 1 to {MAX_ROUTE_NAME} letters, digits, '-', '_' or '.'"),
            ));
        }
        if self.listen.is_empty() {
            return Err(ConfigError::new(
                key("listen"),
                "[]",
                "give at least one address",
            ));
        }
        for (position, addr) in self.listen.iter().enumerate() {
            if self.listen[..position].contains(addr) {
                return Err(ConfigError::new(
                    key("listen"),
                    addr.to_string(),
                    "listed twice",
                ));
            }
        }
        if self.targets.is_empty() {
            return Err(ConfigError::new(
                key("targets"),
                "[]",
                "give at least one target",
            ));
        }
        for (position, target) in self.targets.iter().enumerate() {
            if target.weight > super::MAX_WEIGHT {
                let key = match naming {
                    Naming::Flags => "--target".to_string(),
                    Naming::File => format!("{}.weight", naming.target_key(index, position)),
                };
                return Err(ConfigError::new(
                    key,
                    target.weight.to_string(),
                    format!("must be at most {}", super::MAX_WEIGHT),
                ));
            }
            // The kernel would take port 0 or 0.0.0.0 as "this host", some
            // port: never the service meant.
            let reason = if target.addr.port() == 0 {
                "a target needs a port other than 0"
            } else if target.addr.ip().is_unspecified() {
                "a target needs a host; 0.0.0.0 and [::] only mean \"every address\" to listen on"
            } else {
                continue;
            };
            return Err(ConfigError::new(
                naming.target_key(index, position),
                &target.name,
                reason,
            ));
        }
        if self.fail_threshold == 0 {
            return Err(ConfigError::new(
                key("fail-threshold"),
                "0",
                "must be at least 1",
            ));
        }
        if self.pool > 0 && self.pool_max_idle.is_zero() {
            return Err(ConfigError::new(
                key("pool-max-idle"),
                "0",
                format!("must be positive when {} is set", naming.sibling("pool")),
            ));
        }
        if let Some(reason) = buffer_size_problem(self.buffer_size) {
            return Err(ConfigError::new(
                key("buffer-size"),
                format_size(self.buffer_size),
                reason,
            ));
        }
        if self.low_water >= self.buffer_size {
            return Err(ConfigError::new(
                key("low-water"),
                format_size(self.low_water),
                format!(
                    "must be below {} ({})",
                    naming.sibling("buffer-size"),
                    format_size(self.buffer_size)
                ),
            ));
        }
        if self.max_connections == Some(0) {
            return Err(ConfigError::new(
                key("max-connections"),
                "0",
                "must be at least 1",
            ));
        }
        for pattern in &self.matching.sni {
            if let Some(reason) = super::matching::sni_problem(pattern) {
                return Err(ConfigError::new(key("match.sni"), pattern, reason));
            }
        }
        for protocol in &self.matching.alpn {
            if protocol.is_empty() || protocol.len() > 255 {
                return Err(ConfigError::new(
                    key("match.alpn"),
                    protocol,
                    "an ALPN protocol name has 1 to 255 bytes",
                ));
            }
        }
        if self.max_connections_per_source == Some(0) {
            return Err(ConfigError::new(
                key("max-connections-per-source"),
                "0",
                "must be at least 1",
            ));
        }
        for (name, rate) in [
            ("upload-rate", self.upload_rate),
            ("download-rate", self.download_rate),
            ("route-upload-rate", self.route_upload_rate),
            ("route-download-rate", self.route_download_rate),
        ] {
            if rate == Some(0) {
                return Err(ConfigError::new(
                    key(name),
                    "0",
                    "must be at least 1 byte a second (leave it out for no limit)",
                ));
            }
        }
        if let Some(burst) = self.rate_burst {
            if let Some(reason) = buffer_size_problem(burst) {
                return Err(ConfigError::new(
                    key("rate-burst"),
                    format_size(burst),
                    reason,
                ));
            }
        }
        Ok(())
    }
}

/// Why a ring of `size` bytes is refused, if it is.
pub(crate) fn buffer_size_problem(size: usize) -> Option<String> {
    (!(MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&size)).then(|| {
        format!(
            "must be between {} (a page) and {}",
            format_size(MIN_BUFFER_SIZE),
            format_size(MAX_BUFFER_SIZE)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn low_water_must_be_below_buffer_size() {
        let mut config = Config::new(addr("127.0.0.1:1"), addr("127.0.0.1:2"));
        config.routes[0].low_water = config.routes[0].buffer_size;
        let err = config.validate_as(Naming::Flags).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value '64k' for '--low-water': must be below --buffer-size (64k)"
        );
        let err = config.validate_as(Naming::File).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value '64k' for 'route[0].low-water': must be below buffer-size (64k)"
        );
    }

    #[test]
    fn route_names_are_unique_and_plain() {
        let first = Route::new("web", addr("127.0.0.1:1"), addr("127.0.0.1:9"));
        let mut second = Route::new("web", addr("127.0.0.1:2"), addr("127.0.0.1:9"));
        let config = Config::with_routes(vec![first.clone(), second.clone()]);
        assert_eq!(config.validate().unwrap_err().key, "route[1].name");
        second.name = "web api".into();
        let config = Config::with_routes(vec![first, second]);
        assert_eq!(config.validate().unwrap_err().key, "route[1].name");
    }

    #[test]
    fn two_routes_cannot_share_an_address_but_port_0_never_clashes() {
        let clash = |a: &str, b: &str| {
            let config = Config::with_routes(vec![
                Route::new("a", addr(a), addr("127.0.0.1:9")),
                Route::new("b", addr(b), addr("127.0.0.1:9")),
            ]);
            config.validate().is_err()
        };
        assert!(clash("127.0.0.1:80", "127.0.0.1:80"));
        assert!(clash("0.0.0.0:80", "0.0.0.0:80"));
        assert!(clash("0.0.0.0:80", "127.0.0.1:80"));
        assert!(clash("127.0.0.1:80", "[::]:80"));
        assert!(!clash("127.0.0.1:80", "127.0.0.2:80"));
        assert!(!clash("127.0.0.1:80", "127.0.0.1:81"));
        assert!(!clash("127.0.0.1:0", "127.0.0.1:0"));
    }

    #[test]
    fn a_route_lists_each_address_once() {
        let mut config = Config::new(addr("127.0.0.1:1"), addr("127.0.0.1:9"));
        config.routes[0].listen.push(addr("127.0.0.1:1"));
        assert_eq!(config.validate().unwrap_err().key, "route[0].listen");
    }
}
