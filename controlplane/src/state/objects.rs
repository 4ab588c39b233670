//! The simple records: migrations, secrets, configs and the recorded leadership.
//! Secrets have no event topic, and their data never leaves the state except through
//! `State::secret_data` (for agents' assignments).

use constellation_proto::v1::{
    ChangeKind, Config, DeleteConfigCommand, DeleteSecretCommand, LeadershipCommand,
    LeadershipEvent, MigrationEvent, PutConfigCommand, PutMigrationCommand, PutSecretCommand,
    SecretMeta, SecretRecord, command_result::Outcome, event::Payload,
};
use pbjson_types::Timestamp;

use super::services::hex_sha256;
use super::{OpResult, State, done, invalid, not_found, outcome};

/// What reads show of a secret: never its data.
pub(super) fn secret_meta(record: &SecretRecord) -> SecretMeta {
    let spec = record.spec.clone().unwrap_or_default();
    SecretMeta {
        digest: hex_sha256(&spec.data),
        name: spec.name,
        labels: spec.labels,
        version: record.version,
        updated_at: record.updated_at,
    }
}

impl State {
    pub(super) fn put_migration(&mut self, cmd: &PutMigrationCommand, now: Timestamp) -> OpResult {
        let migration = cmd
            .migration
            .as_ref()
            .ok_or_else(|| invalid("migration", "missing"))?;
        if migration.id.is_empty() {
            return Err(invalid("migration.id", "empty"));
        }
        let previous = self.migrations.get(&migration.id);
        if previous != Some(migration) {
            let kind = match previous {
                Some(_) => ChangeKind::Updated,
                None => ChangeKind::Created,
            };
            self.migrations
                .insert(migration.id.clone(), migration.clone());
            let event = MigrationEvent {
                kind: kind as i32,
                migration: Some(migration.clone()),
            };
            self.emit(now, Payload::Migration(event));
        }
        Ok(outcome(Outcome::Migration(migration.clone())))
    }

    /// Stores a new version of the secret; an identical put changes nothing.
    pub(super) fn put_secret(&mut self, cmd: &PutSecretCommand, now: Timestamp) -> OpResult {
        let spec = cmd
            .secret
            .as_ref()
            .ok_or_else(|| invalid("secret", "missing"))?;
        if spec.name.is_empty() {
            return Err(invalid("secret.name", "empty"));
        }
        let current = self.secrets.get(&spec.name);
        let changed = current.and_then(|r| r.spec.as_ref()) != Some(spec);
        if changed {
            let record = SecretRecord {
                spec: Some(spec.clone()),
                version: current.map_or(0, |r| r.version).saturating_add(1),
                updated_at: Some(now),
            };
            self.secrets.insert(spec.name.clone(), record);
        }
        let meta = self
            .secrets
            .get(&spec.name)
            .map(secret_meta)
            .unwrap_or_default();
        let mut result = outcome(Outcome::Secret(meta));
        result.changed = changed;
        Ok(result)
    }

    pub(super) fn delete_secret(&mut self, cmd: &DeleteSecretCommand) -> OpResult {
        match self.secrets.remove(&cmd.name) {
            Some(_) => Ok(done()),
            None => Err(not_found("secret", &cmd.name)),
        }
    }

    /// Stores a new version of the config; an identical put changes nothing.
    pub(super) fn put_config(&mut self, cmd: &PutConfigCommand, now: Timestamp) -> OpResult {
        let spec = cmd
            .config
            .as_ref()
            .ok_or_else(|| invalid("config", "missing"))?;
        if spec.name.is_empty() {
            return Err(invalid("config.name", "empty"));
        }
        let current = self.configs.get(&spec.name);
        let changed = current.and_then(|c| c.spec.as_ref()) != Some(spec);
        if changed {
            let config = Config {
                spec: Some(spec.clone()),
                version: current.map_or(0, |c| c.version).saturating_add(1),
                updated_at: Some(now),
            };
            self.configs.insert(spec.name.clone(), config);
        }
        let config = self.configs.get(&spec.name).cloned().unwrap_or_default();
        let mut result = outcome(Outcome::Config(config));
        result.changed = changed;
        Ok(result)
    }

    pub(super) fn delete_config(&mut self, cmd: &DeleteConfigCommand) -> OpResult {
        match self.configs.remove(&cmd.name) {
            Some(_) => Ok(done()),
            None => Err(not_found("config", &cmd.name)),
        }
    }

    /// Records the leadership; a repeat of the recorded one changes nothing.
    pub(super) fn set_leadership(&mut self, cmd: &LeadershipCommand, now: Timestamp) -> OpResult {
        if self.leadership.as_ref() != Some(cmd) {
            self.leadership = Some(cmd.clone());
            let event = LeadershipEvent {
                leader_id: cmd.leader_id,
                leader_api_addr: cmd.leader_api_addr.clone(),
                term: cmd.term,
            };
            self.emit(now, Payload::Leadership(event));
        }
        Ok(done())
    }
}
