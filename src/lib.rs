//! till: a self-hosted payment system in one binary.

pub mod config;
pub mod db;
pub mod money;
pub mod sandbox;
