//! PostgreSQL and SQLite behind one implementation (sqlx `Any`).

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use secrecy::ExposeSecret;
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;

use super::{Dialect, MetadataError, MetadataStore};
use crate::config::Settings;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

/// Set on every SQLite connection: write-ahead log (readers never block the
/// writer), fsync at checkpoints only, enforced foreign keys, and waiting on a
/// lock instead of failing.
const SQLITE_PRAGMAS: &[&str] = &[
    "pragma journal_mode = wal",
    "pragma synchronous = normal",
    "pragma foreign_keys = on",
    "pragma busy_timeout = 5000",
];

/// The metadata store over a sqlx pool.
#[derive(Debug, Clone)]
pub struct SqlMetadataStore {
    pool: AnyPool,
    dialect: Dialect,
}

impl SqlMetadataStore {
    /// Opens the pool the settings name and runs pending migrations.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let (url, dialect) = match &settings.database_url {
            Some(url) => (url.expose_secret().to_owned(), Dialect::Postgres),
            None => {
                std::fs::create_dir_all(&settings.data_dir).with_context(|| {
                    format!("while creating data dir {}", settings.data_dir.display())
                })?;
                let path = settings.data_dir.join("media.db");
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    Dialect::Sqlite,
                )
            }
        };
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(5));
        let pool = match dialect {
            Dialect::Postgres => options.max_connections(settings.database_max_connections),
            // SQLite allows one writer; one connection makes every transaction
            // serialisable without SQLITE_BUSY upgrades between connections.
            Dialect::Sqlite => options.max_connections(1).after_connect(|conn, _meta| {
                Box::pin(async move {
                    for pragma in SQLITE_PRAGMAS {
                        sqlx::Executor::execute(&mut *conn, *pragma).await?;
                    }
                    Ok(())
                })
            }),
        }
        .connect(&url)
        .await
        .with_context(|| match dialect {
            Dialect::Postgres => "while connecting to PostgreSQL (MEDIA_DATABASE_URL)".to_owned(),
            Dialect::Sqlite => format!("while opening SQLite in {}", settings.data_dir.display()),
        })?;
        let migrator = match dialect {
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .context("while migrating the metadata store")?;
        Ok(Self { pool, dialect })
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
}

#[async_trait]
impl MetadataStore for SqlMetadataStore {
    fn kind(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }

    async fn ping(&self) -> Result<(), MetadataError> {
        let one: i64 = sqlx::query_scalar("select cast(1 as bigint)")
            .fetch_one(&self.pool)
            .await?;
        if one == 1 {
            Ok(())
        } else {
            Err(MetadataError::Query("select 1 did not answer 1".into()))
        }
    }

    async fn applied_migrations(&self) -> Result<Vec<i64>, MetadataError> {
        let rows =
            sqlx::query("select version from _sqlx_migrations where success order by version")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(MetadataError::from))
            .collect()
    }
}
