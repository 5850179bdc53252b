//! PostgreSQL and the MongoDB-compatible store together: what the tests and the local stack run
//! against.

use tokio::sync::OnceCell;

use crate::HarnessError;
use crate::ferretdb::Store;
use crate::postgres::{ClusterOptions, PostgresServer};

/// A PostgreSQL server and a MongoDB-compatible store.
#[derive(Debug)]
pub struct Stack {
    /// The source database server.
    pub postgres: PostgresServer,
    /// The read store.
    pub store: Store,
}

/// The stack a test process shares between its tests. Statics are never dropped, so its servers
/// stop when the process exits and closes their supervisors' pipes (see [`crate::process`]).
static SHARED: OnceCell<Stack> = OnceCell::const_new();

impl Stack {
    /// The servers named by `DATABASE_URL`/`MONGODB_URI`, or new throwaway ones for the parts
    /// that are not set.
    pub async fn from_env_or_start(
        postgres: ClusterOptions,
        store_port: Option<u16>,
    ) -> Result<Stack, HarnessError> {
        let (postgres, store) = tokio::join!(
            PostgresServer::from_env_or_start(postgres),
            Store::from_env_or_start(store_port),
        );
        Ok(Stack {
            postgres: postgres?,
            store: store?,
        })
    }

    /// The stack shared by every test of this process, started by the first test that asks.
    pub async fn shared() -> Result<&'static Stack, HarnessError> {
        SHARED
            .get_or_try_init(|| Stack::from_env_or_start(ClusterOptions::default(), None))
            .await
    }
}
