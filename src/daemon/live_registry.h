// The daemon's live sandboxes (docs/live-sandboxes.md): the one LiveService.
// Claims sandboxes from the warm pools, keeps their records (live.json),
// timers, pause state and main-process logs, takes over those an earlier
// daemon left running, and destroys them on kill, expiry or stop. Runs on the
// daemon's event loop; blocking calls (freeze, teardown) go to the pool
// runtime's destroy threads.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "daemon/image_puller.h"
#include "daemon/live_record.h"
#include "daemon/live_service.h"
#include "pool/warm_pool.h"

namespace wb::daemon {

struct LiveOptions {
  std::string state_dir;
  std::string default_image;          // "" = none: create must name one
  std::string default_driver = "ns";  // the daemon's --driver
  size_t max_sandboxes = 100;         // --max-sandboxes
  uint64_t default_timeout_s = 300;
  uint64_t max_timeout_s = 86400;                 // --max-sandbox-timeout
  std::chrono::milliseconds claim_timeout{5000};  // the agent's answer to M
  size_t log_half_bytes = 512 << 10;              // main.log and main.log.1, each
};

// The line's time: "2026-01-02T03:04:05.678Z" (RFC 3339, UTC, ms).
std::string Rfc3339Utc(int64_t unix_ms);

class LiveRegistry : public LiveService {
 public:
  LiveRegistry(boost::asio::io_context& io, pool::PoolRegistry& pools, ImagePuller& puller,
               LiveOptions opts);
  ~LiveRegistry() override;

  // At start-up, before the loop runs: takes over every sandbox dir whose
  // live.json names a living process (re-opened by its driver, timer re-armed
  // at its absolute expiry, the main's log resumed).
  void AdoptAll();
  // Creations are refused as draining from now on.
  void BeginDrain() { draining_ = true; }
  // Destroys every live sandbox (their teardowns count in flight in the pool
  // runtime, so its WhenIdle waits for them), or with keep leaves them
  // running for the next daemon, records up to date.
  void Shutdown(bool keep);
  // Live sandboxes by state ("running", "paused"): warmbox_live_sandboxes.
  std::map<std::string, uint64_t> CountByState() const;
  // The network counters of the live sandboxes with a network (one `nft`
  // call each, on the calling thread), by live id, for the metrics.
  std::map<std::string, NetCounters> NetworkCountersById() const;

  // --- LiveService ---------------------------------------------------------
  boost::asio::awaitable<Result<LiveInfo>> Create(LiveCreateRequest req) override;
  std::vector<LiveInfo> List(const std::map<std::string, std::string>& filter) const override;
  Result<LiveInfo> Inspect(const std::string& id) const override;
  Result<LiveInfo> Lookup(const std::string& id) const override;
  boost::asio::awaitable<Result<void>> Kill(const std::string& id) override;
  Result<LiveInfo> SetTimeout(const std::string& id, uint64_t seconds) override;
  boost::asio::awaitable<Result<void>> Pause(const std::string& id) override;
  boost::asio::awaitable<Result<void>> Resume(const std::string& id) override;
  boost::asio::awaitable<Result<LiveInfo>> UpdateNetwork(const std::string& id,
                                                         NetworkSpec spec) override;
  boost::asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> Connect(
      const std::string& id) override;
  Result<std::vector<std::string>> Logs(const std::string& id, size_t tail) const override;
  Result<std::shared_ptr<void>> FollowLogs(const std::string& id, LineFn on_line) override;

 private:
  struct Entry;
  using EntryPtr = std::shared_ptr<Entry>;

  Result<EntryPtr> Find(const std::string& id) const;
  // usage: read the cgroups' figures (not for a create's answer).
  LiveInfo InfoOf(const Entry& e, bool usage = true) const;
  void Persist(Entry& e);
  // An adopted sandbox's recorded network, attached again, and its ports
  // listened on again (published once the entry is registered).
  void AdoptNetwork(Entry& e);
  void PersistSoon(const EntryPtr& e);
  void ArmTimer(const EntryPtr& e);
  void OnExpired(const EntryPtr& e);
  // A sandbox whose process dies on its own is released and shown as dead.
  void WatchLiveness(const EntryPtr& e);
  void ArmLiveness(const EntryPtr& e);
  boost::asio::awaitable<Result<void>> SetPaused(EntryPtr e, bool paused);
  boost::asio::awaitable<Result<void>> Destroy(EntryPtr e, std::string why);
  // The main: started (E keep) or attached to (A from the logged offset).
  boost::asio::awaitable<Result<void>> StartMain(EntryPtr e);
  boost::asio::awaitable<void> FollowMain(EntryPtr e, std::shared_ptr<pool::AgentConn> conn);
  boost::asio::awaitable<Result<std::shared_ptr<pool::AgentConn>>> AttachMain(EntryPtr e);
  // An adopted sandbox's main, still running: attached again and followed.
  void ReattachMain(const EntryPtr& e);
  // Each running service of the image, attached for its exit (docs/services.md).
  void FollowServices(const EntryPtr& e);
  boost::asio::awaitable<void> FollowService(EntryPtr e, size_t index);
  void OnOutput(Entry& e, bool is_stderr, std::string_view data);
  void EmitLine(Entry& e, bool is_stderr, const std::string& text);
  void FlushPartials(Entry& e);
  void EndFollowers(Entry& e);

  boost::asio::io_context& io_;
  pool::PoolRegistry& pools_;
  ImagePuller& puller_;
  LiveOptions opts_;
  std::map<std::string, EntryPtr> live_;  // by live id
  size_t creating_ = 0;
  bool draining_ = false;
};

}  // namespace wb::daemon
