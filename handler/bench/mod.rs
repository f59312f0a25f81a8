pub mod bot;
pub mod startup;
pub mod sync;
