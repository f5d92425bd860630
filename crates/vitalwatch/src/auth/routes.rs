//! The route table: the only way routes are added, so each one carries the [`Access`] it
//! needs, and the table can be listed (`vitalwatch routes`, and the test that tries every
//! route with every kind of caller).

use super::Access;
use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// One registered route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteRule {
    #[serde(serialize_with = "method_text")]
    pub method: Method,
    /// The route's pattern as registered (`/api/devices/{id}`).
    pub path: &'static str,
    pub access: Access,
    /// Whether a request is a read of patient data (audited).
    pub patient_data: bool,
}

fn method_text<S: serde::Serializer>(method: &Method, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(method.as_str())
}

/// The rules by pattern (then method), for the middleware: one hash lookup per request.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: HashMap<&'static str, Vec<RouteRule>>,
}

impl Policy {
    pub fn from_rules(rules: &[RouteRule]) -> Policy {
        let mut by_path: HashMap<&'static str, Vec<RouteRule>> = HashMap::new();
        for rule in rules {
            let methods = by_path.entry(rule.path).or_default();
            if !methods.iter().any(|r| r.method == rule.method) {
                methods.push(rule.clone());
            }
        }
        Policy { rules: by_path }
    }

    /// The rule for a request; HEAD is answered like GET.
    pub fn lookup(&self, method: &Method, path: &str) -> Option<&RouteRule> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.rules
            .get(path)?
            .iter()
            .find(|rule| rule.method == method)
    }

    /// Whether any method of this pattern has a rule.
    pub fn knows_path(&self, path: &str) -> bool {
        self.rules.contains_key(path)
    }
}

/// A router under construction, with its table.
pub struct Routes<S> {
    router: Router<S>,
    table: Vec<RouteRule>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Routes::new()
    }
}

macro_rules! method_fn {
    ($name:ident, $method:ident, $router_fn:ident) => {
        pub fn $name<H, T>(self, path: &'static str, access: Access, handler: H) -> Self
        where
            H: Handler<T, S>,
            T: 'static,
        {
            self.add(
                Method::$method,
                path,
                access,
                axum::routing::$router_fn(handler),
            )
        }
    };
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Routes<S> {
        Routes {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    method_fn!(get, GET, get);
    method_fn!(post, POST, post);
    method_fn!(put, PUT, put);
    method_fn!(delete, DELETE, delete);

    fn add(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        route: axum::routing::MethodRouter<S>,
    ) -> Self {
        self.table.push(RouteRule {
            method,
            path,
            access,
            patient_data: access == Access::Read,
        });
        self.router = self.router.route(path, route);
        self
    }

    /// Adds another table's routes.
    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.table.extend(other.table);
        self.router = self.router.merge(other.router);
        self
    }

    /// Changes the router without touching the table (fallbacks, state).
    pub fn map_router(mut self, f: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        self.router = f(self.router);
        self
    }

    pub fn table(&self) -> &[RouteRule] {
        &self.table
    }

    pub fn into_parts(self) -> (Router<S>, Vec<RouteRule>) {
        (self.router, self.table)
    }

    /// Applies `state` and returns the router with its policy.
    pub fn with_state<S2: Clone + Send + Sync + 'static>(
        self,
        state: S,
    ) -> (Router<S2>, Arc<Policy>) {
        let policy = Arc::new(Policy::from_rules(&self.table));
        (self.router.with_state(state), policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_finds_a_rule_by_pattern_and_method() {
        let rule = |method: Method, access| RouteRule {
            method,
            path: "/api/devices/{id}",
            access,
            patient_data: access == Access::Read,
        };
        let policy = Policy::from_rules(&[
            rule(Method::GET, Access::Read),
            rule(Method::PUT, Access::Admin),
        ]);
        let access = |method: Method| {
            policy
                .lookup(&method, "/api/devices/{id}")
                .map(|r| r.access)
        };
        assert_eq!(access(Method::GET), Some(Access::Read));
        assert_eq!(access(Method::HEAD), Some(Access::Read));
        assert_eq!(access(Method::PUT), Some(Access::Admin));
        assert_eq!(access(Method::DELETE), None);
        assert!(policy.knows_path("/api/devices/{id}"));
        assert!(!policy.knows_path("/api/devices"));
        assert!(
            policy.lookup(&Method::GET, "/api/devices/bed-1").is_none(),
            "patterns, not paths"
        );
    }
}
