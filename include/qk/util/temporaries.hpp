#pragma once
// Temporary outputs that outlive no run: the atomic writers (atomic_file.hpp, atomic_dir.hpp) name their
// temporaries `.NAME.tmp-PID-XXXXXX` beside the target NAME, register them here while they are open, and
//  - remove_on_signals() (called once by a program such as qtool) makes SIGINT, SIGTERM and SIGHUP remove every
//    registered temporary before the process dies of the signal (a signal the process ignores stays ignored);
//  - remove_stale_temporaries(target), called by each writer, removes `.NAME.tmp-PID-*` entries beside the target
//    whose PID names no live process: what a run killed by SIGKILL (or a crash) left behind. Entries of a live
//    process, and directories holding anything but plain files, are left alone.
// The registry is a fixed table written only outside the handler, so the handler calls nothing but unlink/rmdir.
#include <filesystem>
#include <string>

namespace qk::util {

// The prefix of the temporaries of `target` made by this process: `.NAME.tmp-PID-`.
std::string temporary_prefix(const std::filesystem::path& target);

// Installs the handlers (idempotent). Without it, temporaries are still removed on every normal exit and error.
void remove_on_signals();

// Registers a temporary file or directory (a directory is removed after the files: register its contents too).
// Returns a slot id for unregister_temporary, or -1 when the table is full (the path is then only removed by the
// writer's destructor).
int register_temporary(const std::filesystem::path& path, bool directory);
void unregister_temporary(int slot);

// Removes the stale temporaries of `target` (see above); returns how many entries it removed.
int remove_stale_temporaries(const std::filesystem::path& target);

}  // namespace qk::util
