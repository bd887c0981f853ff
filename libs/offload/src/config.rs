//! Which object store to offload to, and how: the driver names and fields of
//! Pulsar's offload policies, turned into an `object_store` client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::error::{OffloadError, Result};

/// An object store kind, by Pulsar's driver names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// `aws-s3` or `S3` (any S3-protocol server through `endpoint`).
    S3,
    /// `google-cloud-storage`.
    Gcs,
    /// `azureblob`.
    Azure,
    /// `filesystem`: a directory (the standalone default).
    Filesystem,
}

impl Driver {
    /// Parses a driver name as Pulsar spells it (case-insensitive).
    pub fn parse(name: &str) -> Result<Driver> {
        match name.to_ascii_lowercase().as_str() {
            "aws-s3" | "s3" => Ok(Driver::S3),
            "google-cloud-storage" | "gcs" => Ok(Driver::Gcs),
            "azureblob" => Ok(Driver::Azure),
            "filesystem" => Ok(Driver::Filesystem),
            other => Err(OffloadError::Config(format!(
                "unknown offload driver {other:?} (aws-s3, S3, google-cloud-storage, azureblob, filesystem)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Driver::S3 => "aws-s3",
            Driver::Gcs => "google-cloud-storage",
            Driver::Azure => "azureblob",
            Driver::Filesystem => "filesystem",
        }
    }
}

/// An access key pair (its secret never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticCredentials({}, <secret>)", self.access_key_id)
    }
}

/// Where and how to offload. Credentials are not here: they come from the
/// environment (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, or
/// `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` for IRSA; `SERVICE_ACCOUNT`
/// / `GOOGLE_*`; `AZURE_STORAGE_*`).
#[derive(Clone, Debug)]
pub struct DriverConfig {
    pub driver: Driver,
    /// Bucket (S3, GCS) or container (Azure).
    pub bucket: String,
    pub region: Option<String>,
    /// An S3-compatible server or an Azure endpoint; `http://` allows plain HTTP.
    pub endpoint: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), as most S3-compatible
    /// servers want; virtual-hosted style (`bucket.endpoint/key`) otherwise.
    pub path_style: bool,
    /// The directory of the `filesystem` driver.
    pub path: Option<String>,
    /// S3 keys given explicitly; `None` takes them from the environment.
    pub credentials: Option<StaticCredentials>,
    /// Largest block of the data object (an entry larger than this gets a
    /// block of its own).
    pub max_block_size: usize,
    /// Multipart part size (S3 wants at least 5 MiB but for the last part).
    pub part_size: usize,
    /// Parts uploading at once per ledger.
    pub upload_concurrency: usize,
    /// Bytes fetched ahead by a read of an offloaded ledger.
    pub read_buffer_size: usize,
    /// Deadline of one request (retries included).
    pub request_timeout: Duration,
}

impl DriverConfig {
    /// A configuration with the defaults for everything but the location.
    pub fn new(driver: Driver, bucket: &str) -> Self {
        DriverConfig {
            driver,
            bucket: bucket.to_string(),
            region: None,
            endpoint: None,
            path_style: true,
            path: None,
            credentials: None,
            max_block_size: 64 << 20,
            part_size: 8 << 20,
            upload_concurrency: 2,
            read_buffer_size: 1 << 20,
            request_timeout: Duration::from_secs(30),
        }
    }

    pub fn filesystem(path: &str) -> Self {
        let mut c = Self::new(Driver::Filesystem, "");
        c.path = Some(path.to_string());
        c
    }

    /// What a ledger's offload context records about where its objects are,
    /// so that it can be read back (and deleted) after the defaults change.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("driver".to_string(), self.driver.name().to_string());
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v.clone());
            }
        };
        put("region", &self.region);
        put("endpoint", &self.endpoint);
        put("path", &self.path);
        if !self.bucket.is_empty() {
            m.insert("bucket".to_string(), self.bucket.clone());
        }
        m
    }

    /// The configuration a `metadata()` record describes (defaults for the
    /// rest), to read or delete a ledger's objects after the defaults changed.
    pub fn from_metadata(m: &BTreeMap<String, String>) -> Result<Self> {
        let driver = Driver::parse(m.get("driver").map_or("", String::as_str))?;
        let mut c = Self::new(driver, m.get("bucket").map_or("", String::as_str));
        c.region = m.get("region").cloned();
        c.endpoint = m.get("endpoint").cloned();
        c.path = m.get("path").cloned();
        Ok(c)
    }

    /// Builds the object store client; checks the fields the driver needs.
    pub(crate) fn build(&self) -> Result<Arc<dyn ObjectStore>> {
        let need_bucket = || {
            if self.bucket.is_empty() {
                return Err(OffloadError::Config(format!(
                    "driver {} needs a bucket",
                    self.driver.name()
                )));
            }
            Ok(())
        };
        let store: Arc<dyn ObjectStore> = match self.driver {
            Driver::S3 => {
                need_bucket()?;
                Arc::new(self.s3()?)
            }
            Driver::Gcs => {
                need_bucket()?;
                Arc::new(self.gcs()?)
            }
            Driver::Azure => {
                need_bucket()?;
                Arc::new(self.azure()?)
            }
            Driver::Filesystem => Arc::new(self.filesystem_store()?),
        };
        Ok(store)
    }

    fn client_options(&self) -> ClientOptions {
        let plain_http = self
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        ClientOptions::new()
            .with_timeout(self.request_timeout)
            .with_connect_timeout(self.request_timeout.min(Duration::from_secs(5)))
            .with_allow_http(plain_http)
    }

    /// Retries within the request's deadline, so that an outage surfaces as
    /// an error instead of a wait without end.
    fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: self.request_timeout,
        }
    }

    fn s3(&self) -> Result<object_store::aws::AmazonS3> {
        // from_env: AWS_* credentials, including web identity (IRSA) tokens.
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_virtual_hosted_style_request(!self.path_style)
            .with_client_options(self.client_options())
            .with_retry(self.retry());
        if let Some(region) = &self.region {
            b = b.with_region(region);
        }
        if let Some(endpoint) = &self.endpoint {
            b = b.with_endpoint(endpoint);
        }
        if let Some(c) = &self.credentials {
            b = b
                .with_access_key_id(&c.access_key_id)
                .with_secret_access_key(&c.secret_access_key);
        }
        b.build().map_err(|e| config_error(self.driver, e))
    }

    fn gcs(&self) -> Result<object_store::gcp::GoogleCloudStorage> {
        GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(&self.bucket)
            .with_client_options(self.client_options())
            .with_retry(self.retry())
            .build()
            .map_err(|e| config_error(self.driver, e))
    }

    fn azure(&self) -> Result<object_store::azure::MicrosoftAzure> {
        let mut b = MicrosoftAzureBuilder::from_env()
            .with_container_name(&self.bucket)
            .with_client_options(self.client_options())
            .with_retry(self.retry());
        if let Some(endpoint) = &self.endpoint {
            b = b.with_endpoint(endpoint.clone());
        }
        b.build().map_err(|e| config_error(self.driver, e))
    }

    fn filesystem_store(&self) -> Result<LocalFileSystem> {
        let path = self
            .path
            .as_deref()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| OffloadError::Config("driver filesystem needs a path".into()))?;
        std::fs::create_dir_all(path)
            .map_err(|e| OffloadError::Config(format!("filesystem path {path}: {e}")))?;
        LocalFileSystem::new_with_prefix(path).map_err(|e| config_error(self.driver, e))
    }
}

fn config_error(driver: Driver, e: object_store::Error) -> OffloadError {
    OffloadError::Config(format!("driver {}: {e}", driver.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_parse_as_pulsar_spells_them() {
        assert_eq!(Driver::parse("aws-s3").unwrap(), Driver::S3);
        assert_eq!(Driver::parse("S3").unwrap(), Driver::S3);
        assert_eq!(Driver::parse("google-cloud-storage").unwrap(), Driver::Gcs);
        assert_eq!(Driver::parse("azureblob").unwrap(), Driver::Azure);
        assert_eq!(Driver::parse("filesystem").unwrap(), Driver::Filesystem);
        assert!(matches!(
            Driver::parse("tape"),
            Err(OffloadError::Config(_))
        ));
    }

    #[test]
    fn every_driver_builds_from_the_same_fields() {
        let mut s3 = DriverConfig::new(Driver::S3, "b");
        s3.region = Some("eu-west-1".into());
        s3.endpoint = Some("http://127.0.0.1:9".into());
        assert!(s3.build().is_ok());
        let mut azure = DriverConfig::new(Driver::Azure, "container");
        azure.endpoint = Some("http://127.0.0.1:10000/account".into());
        std::env::set_var("AZURE_STORAGE_ACCOUNT_NAME", "account");
        assert!(azure.build().is_ok(), "{:?}", azure.build().err());
        let dir = tempfile::tempdir().unwrap();
        let fs = DriverConfig::filesystem(&dir.path().join("x").display().to_string());
        assert!(fs.build().is_ok());
        assert_eq!(fs.metadata()["driver"], "filesystem");
        let back = DriverConfig::from_metadata(&s3.metadata()).unwrap();
        assert_eq!(back.metadata(), s3.metadata());
        assert_eq!(back.endpoint.as_deref(), Some("http://127.0.0.1:9"));
    }

    #[test]
    fn missing_fields_are_config_errors() {
        let err = DriverConfig::new(Driver::S3, "").build().err();
        assert!(matches!(err, Some(OffloadError::Config(_))));
        let err = DriverConfig::new(Driver::Filesystem, "").build().err();
        assert!(matches!(err, Some(OffloadError::Config(_))));
    }
}
