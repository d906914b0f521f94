//! TODO module fsutil
