//! Advisory whole-file locks (flock), released on drop.

use std::fs::File;
use std::os::fd::AsRawFd;

pub(crate) struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    /// Blocks until the lock is held.
    pub(crate) fn exclusive(file: &'a File) -> std::io::Result<Flock<'a>> {
        // SAFETY: flock on a valid, open descriptor has no memory-safety requirements.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Flock(file))
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release the lock anyway.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
