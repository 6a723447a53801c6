// Temporaries removed on signals and after dead runs (qk/util/temporaries.hpp).
#include "qk/util/temporaries.hpp"

#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace qk::util {
namespace fs = std::filesystem;

namespace {

// state: 0 free, 1 being written, 2 a file to remove, 3 a directory to remove
struct Slot {
  std::atomic<int> state{0};
  char path[PATH_MAX];
};
constexpr int kSlots = 64;
Slot g_slots[kSlots];

void on_signal(int sig) {
  for (int pass = 2; pass <= 3; ++pass)  // files first, then the (now empty) directories
    for (auto& s : g_slots)
      if (s.state.load(std::memory_order_acquire) == pass) {
        if (pass == 2) ::unlink(s.path);
        else ::rmdir(s.path);
      }
  // die of the signal, as the shell expects (the handler was installed with SA_RESETHAND)
  ::raise(sig);
}

}  // namespace

std::string temporary_prefix(const fs::path& target) {
  std::string s(1, '.');
  s += target.filename().string();
  s += ".tmp-";
  s += std::to_string(::getpid());
  s += '-';
  return s;
}

void remove_on_signals() {
  static std::atomic<bool> done{false};
  if (done.exchange(true)) return;
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old{};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;  // nohup: stays ignored
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    ::sigaction(sig, &sa, nullptr);
  }
}

int register_temporary(const fs::path& path, bool directory) {
  std::error_code ec;
  const std::string p = fs::absolute(path, ec).string();
  if (ec || p.size() >= PATH_MAX) return -1;
  for (int i = 0; i < kSlots; ++i) {
    int expected = 0;
    if (!g_slots[i].state.compare_exchange_strong(expected, 1)) continue;
    std::memcpy(g_slots[i].path, p.c_str(), p.size() + 1);
    g_slots[i].state.store(directory ? 3 : 2, std::memory_order_release);
    return i;
  }
  return -1;
}

void unregister_temporary(int slot) {
  if (slot >= 0 && slot < kSlots) g_slots[slot].state.store(0, std::memory_order_release);
}

int remove_stale_temporaries(const fs::path& target) {
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string prefix(1, '.');
  prefix += target.filename().string();
  prefix += ".tmp-";
  int removed = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    // PID, then '-'
    size_t i = prefix.size();
    long pid = 0;
    while (i < name.size() && name[i] >= '0' && name[i] <= '9' && pid < 1000000000L) pid = pid * 10 + (name[i++] - '0');
    if (i == prefix.size() || i >= name.size() || name[i] != '-' || pid <= 0) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    std::error_code e2;
    const auto st = fs::symlink_status(e.path(), e2);
    if (fs::is_regular_file(st)) {
      removed += fs::remove(e.path(), e2) ? 1 : 0;
    } else if (fs::is_directory(st)) {
      bool plain = true;
      for (const auto& c : fs::directory_iterator(e.path(), e2)) plain = plain && c.is_regular_file(e2) && !c.is_symlink(e2);
      if (!plain || e2) continue;
      for (const auto& c : fs::directory_iterator(e.path(), e2)) fs::remove(c.path(), e2);
      removed += fs::remove(e.path(), e2) ? 1 : 0;
    }
  }
  return removed;
}

}  // namespace qk::util
