//! Routes: a `matchit` path tree whose leaves map HTTP methods to handlers.
//!
//! Patterns use `matchit` 0.9 syntax: `/v1/me/reports/{id}` binds `id`, `/files/{*rest}` binds
//! the rest of the path. Parameters are not percent-decoded.

use std::sync::Arc;

use http::{Method, Request};
use hyper::body::Incoming;

use super::context::{PathParams, RequestContext};
use super::response::{BoxFuture, HttpResponse};

/// Something that answers a request: usually a closure
/// `|request, context| async move { … }` returning [`HttpResponse`].
///
/// The server runs each call on its own task: a panic becomes a 500 problem instead of killing
/// the connection, and the handler runs to completion even if the client goes away, so it never
/// drops a database driver's future half-way.
pub trait Handler: Send + Sync + 'static {
    /// Answers `request`; `context` carries the request id and the path parameters.
    fn call(&self, request: Request<Incoming>, context: RequestContext) -> BoxFuture<HttpResponse>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request<Incoming>, RequestContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HttpResponse> + Send + 'static,
{
    fn call(&self, request: Request<Incoming>, context: RequestContext) -> BoxFuture<HttpResponse> {
        Box::pin(self(request, context))
    }
}

/// Why a route could not be added.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The pattern is malformed or overlaps an existing pattern ambiguously.
    #[error("invalid route pattern {pattern}")]
    Pattern {
        /// The pattern given to [`Router::route`].
        pattern: String,
        /// What `matchit` objected to.
        #[source]
        source: matchit::InsertError,
    },
    /// The same method and pattern were added twice.
    #[error("route {method} {pattern} is already defined")]
    Duplicate {
        /// The method.
        method: Method,
        /// The pattern.
        pattern: String,
    },
}

/// The routes of a service. [`super::HttpServer::new`] adds `/healthz`, `/readyz` and
/// `/metrics` to it.
#[derive(Default)]
pub struct Router {
    /// Path pattern → index into `endpoints`.
    paths: matchit::Router<usize>,
    endpoints: Vec<Endpoint>,
}

/// One path pattern and the handlers of its methods.
struct Endpoint {
    pattern: String,
    methods: Vec<(Method, Arc<dyn Handler>)>,
}

/// What a request's method and path lead to.
pub(crate) enum RouteMatch<'r> {
    /// A handler for this method and path.
    Found {
        handler: Arc<dyn Handler>,
        pattern: &'r str,
        params: PathParams,
    },
    /// The path exists, but not with this method.
    MethodNotAllowed {
        pattern: &'r str,
        allowed: Vec<Method>,
    },
    /// No pattern matches the path.
    NotFound,
}

impl Router {
    /// A router without routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `method` requests whose path matches `pattern` to `handler`.
    pub fn route(
        &mut self,
        method: Method,
        pattern: &str,
        handler: impl Handler,
    ) -> Result<(), RouteError> {
        let existing = self
            .endpoints
            .iter_mut()
            .find(|endpoint| endpoint.pattern == pattern);
        let endpoint = match existing {
            Some(endpoint) => endpoint,
            None => {
                let index = self.endpoints.len();
                self.paths
                    .insert(pattern, index)
                    .map_err(|source| RouteError::Pattern {
                        pattern: pattern.to_owned(),
                        source,
                    })?;
                self.endpoints.push(Endpoint {
                    pattern: pattern.to_owned(),
                    methods: Vec::new(),
                });
                &mut self.endpoints[index]
            }
        };
        if endpoint.methods.iter().any(|(known, _)| *known == method) {
            return Err(RouteError::Duplicate {
                method,
                pattern: pattern.to_owned(),
            });
        }
        endpoint.methods.push((method, Arc::new(handler)));
        Ok(())
    }

    /// Finds the handler for `method` and `path`.
    pub(crate) fn find(&self, method: &Method, path: &str) -> RouteMatch<'_> {
        let Ok(matched) = self.paths.at(path) else {
            return RouteMatch::NotFound;
        };
        let Some(endpoint) = self.endpoints.get(*matched.value) else {
            return RouteMatch::NotFound;
        };
        let handler = endpoint
            .methods
            .iter()
            .find(|(known, _)| known == method)
            .map(|(_, handler)| Arc::clone(handler));
        match handler {
            Some(handler) => RouteMatch::Found {
                handler,
                pattern: &endpoint.pattern,
                params: PathParams::from_matchit(&matched.params),
            },
            None => RouteMatch::MethodNotAllowed {
                pattern: &endpoint.pattern,
                allowed: endpoint
                    .methods
                    .iter()
                    .map(|(known, _)| known.clone())
                    .collect(),
            },
        }
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for endpoint in &self.endpoints {
            for (method, _) in &endpoint.methods {
                list.entry(&format_args!("{method} {}", endpoint.pattern));
            }
        }
        list.finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::problem::Problem;

    fn handler() -> impl Handler {
        |_request: Request<Incoming>, _context: RequestContext| async {
            Problem::not_found("test").into_response()
        }
    }

    fn router() -> Router {
        let mut router = Router::new();
        router
            .route(Method::GET, "/v1/me/reports/{id}", handler())
            .unwrap();
        router
            .route(Method::DELETE, "/v1/me/reports/{id}", handler())
            .unwrap();
        router
            .route(Method::POST, "/v1/uploads", handler())
            .unwrap();
        router
    }

    #[test]
    fn a_matching_route_binds_path_parameters() {
        let router = router();
        let RouteMatch::Found {
            pattern, params, ..
        } = router.find(&Method::GET, "/v1/me/reports/r-42")
        else {
            panic!("route not found");
        };
        assert_eq!(pattern, "/v1/me/reports/{id}");
        assert_eq!(params.get("id"), Some("r-42"));
        assert_eq!(params.get("other"), None);
    }

    #[test]
    fn a_known_path_with_another_method_lists_the_allowed_methods() {
        let router = router();
        let RouteMatch::MethodNotAllowed { allowed, .. } =
            router.find(&Method::PUT, "/v1/me/reports/r-42")
        else {
            panic!("expected method not allowed");
        };
        assert_eq!(allowed, vec![Method::GET, Method::DELETE]);
    }

    #[test]
    fn an_unknown_path_is_not_found() {
        assert!(matches!(
            router().find(&Method::GET, "/v1/nope"),
            RouteMatch::NotFound
        ));
    }

    #[test]
    fn adding_the_same_route_twice_is_an_error() {
        let mut router = router();
        let result = router.route(Method::POST, "/v1/uploads", handler());
        assert!(matches!(result, Err(RouteError::Duplicate { .. })));
    }

    #[test]
    fn a_conflicting_pattern_is_an_error() {
        let mut router = router();
        let result = router.route(Method::GET, "/v1/me/reports/{other}", handler());
        assert!(
            matches!(result, Err(RouteError::Pattern { .. })),
            "{result:?}"
        );
    }
}
