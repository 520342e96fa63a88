#include "daemon/live_registry.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/fs.h"
#include "base/json.h"
#include "base/log.h"
#include "base/strings.h"
#include "daemon/published_ports.h"
#include "daemon/services.h"
#include "sandbox/net/net_attach.h"
#include "sandbox/sandbox_dir.h"

namespace wb::daemon {

namespace asio = boost::asio;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;
using nlohmann::json;

namespace {

constexpr size_t kMaxPartialLine = 16 << 10;  // a longer line is cut into lines of this size

int64_t NowMs() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

Error NotFound(const std::string& id) {
  return Fail(ErrorCode::kNotFound, "sandbox", id, "no such live sandbox");
}

Error Bad(const std::string& field, const std::string& why) {
  return Fail(ErrorCode::kInvalidArgument, "bad request", field, why);
}

}  // namespace

std::string Rfc3339Utc(int64_t unix_ms) {
  time_t secs = static_cast<time_t>(unix_ms / 1000);
  tm t{};
  ::gmtime_r(&secs, &t);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900,
                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                static_cast<int>(unix_ms % 1000));
  return buf;
}

const char* LiveStateName(LiveState s) {
  switch (s) {
    case LiveState::kRunning:
      return "running";
    case LiveState::kPaused:
      return "paused";
    case LiveState::kDead:
      return "dead";
  }
  return "dead";
}

std::string ToJson(const LiveInfo& i) {
  json j = {{"id", i.id},
            {"image", i.image},
            {"driver", i.driver},
            {"state", LiveStateName(i.state)},
            {"created_ms", i.created_ms},
            {"expires_ms", i.expires_ms},
            {"on_timeout", i.on_timeout},
            {"metadata", i.metadata},
            {"env", i.env},
            {"user", i.user},
            {"cwd", i.cwd},
            {"memory_bytes", i.memory_bytes},
            {"pids", i.pids},
            {"cpus", i.cpus},
            {"main", i.main},
            {"main_pid", i.main_pid},
            {"main_exit_code", i.main_exit_code ? json(*i.main_exit_code) : json(nullptr)},
            {"services", ServicesJson(i.services)},
            {"memory_current", i.memory_current},
            {"cpu_usage_us", i.cpu_usage_us},
            {"pids_current", i.pids_current},
            {"disk_used", i.disk_used},
            {"disk_total", i.disk_total}};
  json ports = json::array();
  for (const auto& p : i.network.ports) {
    ports.push_back({{"host_addr", p.host_addr}, {"host_port", p.host_port}, {"port", p.port}});
  }
  j["network"] = {{"mode", NetworkModeName(i.network.mode)},
                  {"allow_out", i.network.allow_out},
                  {"deny_out", i.network.deny_out},
                  {"ports", ports},
                  {"bytes_out", i.net.bytes_out},
                  {"bytes_in", i.net.bytes_in},
                  {"refused", i.net.refused}};
  if (i.state == LiveState::kDead) j["dead_reason"] = i.dead_reason;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

struct LiveRegistry::Entry {
  explicit Entry(asio::io_context& io) : timer(io), flush_timer(io) {}
  LiveRecord rec;
  std::shared_ptr<Sandbox> sb;
  std::string dir;
  LiveState state = LiveState::kRunning;
  std::string dead_reason;
  asio::steady_timer timer;
  asio::steady_timer flush_timer;
  bool flush_armed = false;
  bool gone = false;  // killed (or left at shutdown): every coroutine of it ends
  // The main's attachment and its log.
  std::shared_ptr<pool::AgentConn> main_conn;
  uint64_t offset = 0;  // offset of the next output byte from the agent
  std::string partial[2];
  uint64_t partial_start[2] = {0, 0};
  bool has_partial[2] = {false, false};
  UniqueFd log;
  uint64_t log_size = 0;
  std::map<uint64_t, LineFn> followers;
  uint64_t next_follower = 0;
  // Readable when the sandbox's host process dies on its own (WatchLiveness).
  std::shared_ptr<asio::posix::stream_descriptor> liveness;
  // An adopted vm sandbox that was paused: its channels (and so the main's
  // attachment) are served once it is resumed.
  bool attach_main_on_resume = false;
  // The network in force (docs/network.md), kept here so that inspect on the
  // loop never reads the sandbox's while an update changes it on a blocking
  // thread; net_busy: an update (or attach) is in flight.
  NetworkSpec network;
  bool net_busy = false;
  // The create's -p listeners (docs/network.md); closed with the sandbox.
  std::unique_ptr<PublishedPorts> published;
};

LiveRegistry::LiveRegistry(asio::io_context& io, pool::PoolRegistry& pools, ImagePuller& puller,
                           LiveOptions opts)
    : io_(io), pools_(pools), puller_(puller), opts_(std::move(opts)) {}

LiveRegistry::~LiveRegistry() {
  // Whatever is still here when the daemon object goes (a stop that did not
  // call Shutdown) is left running: never killed by accident.
  for (auto& [id, e] : live_) {
    if (e->sb) e->sb->Abandon();
  }
}

Result<LiveRegistry::EntryPtr> LiveRegistry::Find(const std::string& id) const {
  auto it = live_.find(id);
  if (it == live_.end()) return NotFound(id);
  return it->second;
}

LiveInfo LiveRegistry::InfoOf(const Entry& e, bool usage) const {
  LiveInfo i;
  const LiveRecord& r = e.rec;
  i.id = r.id;
  i.image = r.image;
  i.driver = r.driver;
  i.state = e.state;
  i.dead_reason = e.dead_reason;
  i.created_ms = r.created_ms;
  i.expires_ms = r.expires_ms;
  i.on_timeout = r.on_timeout;
  i.metadata = r.metadata;
  i.env = r.env;
  i.user = r.user;
  i.cwd = r.cwd;
  i.access_token = r.access_token;
  i.memory_bytes = r.memory_bytes;
  i.pids = r.pids;
  i.cpus = r.cpus;
  i.main = r.main;
  i.main_pid = r.main_pid;
  i.main_exit_code = r.main_exit_code;
  i.services = r.services;
  if (e.sb && usage) {
    ResourceUsage u = e.sb->Usage();
    i.memory_current = u.memory_bytes;
    i.cpu_usage_us = u.cpu_usage_us;
    i.pids_current = u.pids;
    i.disk_used = u.disk_used_bytes;
    i.disk_total = u.disk_total_bytes;
    if (!e.net_busy && e.network.mode != NetworkMode::kNone) {
      if (auto n = e.sb->NetworkCounters(); n.ok()) i.net = *n;
    }
  }
  i.network = e.network;
  i.network.ports.clear();
  if (e.published && !e.gone) i.network.ports = e.published->ports();
  return i;
}

void LiveRegistry::Persist(Entry& e) {
  if (e.gone || e.dir.empty()) return;
  if (auto r = WriteLiveRecord(e.dir, e.rec); !r.ok()) {
    spdlog::warn("live sandbox {}: writing its record: {}", e.rec.id, r.error().ToString());
  }
}

void LiveRegistry::PersistSoon(const EntryPtr& e) {
  // The main's log offset moves with every chunk: written at most 4 times a
  // second (a daemon killed in between logs up to that much output twice).
  if (e->flush_armed) return;
  e->flush_armed = true;
  e->flush_timer.expires_after(std::chrono::milliseconds(250));
  e->flush_timer.async_wait([this, e](error_code ec) {
    e->flush_armed = false;
    if (!ec) Persist(*e);
  });
}

void LiveRegistry::ArmTimer(const EntryPtr& e) {
  int64_t left = std::max<int64_t>(0, e->rec.expires_ms - NowMs());
  e->timer.expires_after(std::chrono::milliseconds(left));
  e->timer.async_wait([this, e](error_code ec) {
    if (!ec && !e->gone) OnExpired(e);
  });
}

void LiveRegistry::WatchLiveness(const EntryPtr& e) {
  // The sandbox's pidfd (its agent, or its VM's QEMU) turns readable when it
  // exits: an agent the OOM killer took, a guest that panicked. Watched on a
  // duplicate, so the sandbox keeps its own.
  if (!e->sb || e->sb->host_pid() <= 0) return;
  // A pidfd of its own (not a dup of the sandbox's: the event loop makes its
  // fd non-blocking, a flag a dup would share with the one the sandbox reaps
  // through). The process is alive and pinned (our child, or adopted through
  // a pidfd), so its pid names it.
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, e->sb->host_pid(), 0));
  if (fd < 0) return;
  e->liveness = std::make_shared<asio::posix::stream_descriptor>(io_, fd);
  ArmLiveness(e);
}

void LiveRegistry::ArmLiveness(const EntryPtr& e) {
  e->liveness->async_wait(asio::posix::stream_descriptor::wait_read, [this, e](error_code ec) {
    if (ec || e->gone) return;
    // The kernel's own answer, not the reactor's: a pidfd polls readable
    // only once its process has exited. A wake-up without it (the reactor
    // may report a freshly registered descriptor) is not a death.
    pollfd p{e->liveness->native_handle(), POLLIN, 0};
    if (::poll(&p, 1, 0) != 1 || !(p.revents & POLLIN)) {
      ArmLiveness(e);
      return;
    }
    std::string why = "the sandbox's process exited on its own";
    if (e->sb && e->sb->OomKills() > 0) why += " (its memory cgroup counted an OOM kill)";
    spdlog::warn("live sandbox {}: {}; releasing it", e->rec.id, why);
    asio::co_spawn(
        io_,
        [this, e, why]() -> asio::awaitable<void> {
          (void)co_await Destroy(e, why);
          // Listed as dead, with the reason, until killed or until its
          // timeout; its resources are already released.
          e->timer.expires_after(
              std::chrono::milliseconds(std::max<int64_t>(0, e->rec.expires_ms - NowMs())));
          e->timer.async_wait([this, e](error_code ec2) {
            if (ec2) return;
            auto it = live_.find(e->rec.id);
            if (it != live_.end() && it->second == e) live_.erase(it);
          });
        },
        asio::detached);
  });
}

void LiveRegistry::OnExpired(const EntryPtr& e) {
  if (e->rec.on_timeout == "pause") {
    if (e->state != LiveState::kRunning) return;
    spdlog::info("live sandbox {}: timeout; pausing it", e->rec.id);
    asio::co_spawn(
        io_,
        [this, e]() -> asio::awaitable<void> {
          auto r = co_await SetPaused(e, true);
          if (!r.ok()) {
            spdlog::warn("live sandbox {}: pause at timeout: {}", e->rec.id, r.error().ToString());
          }
        },
        asio::detached);
    return;
  }
  spdlog::info("live sandbox {}: timeout; killing it", e->rec.id);
  live_.erase(e->rec.id);
  asio::co_spawn(
      io_, [this, e]() -> asio::awaitable<void> { (void)co_await Destroy(e, "timeout"); },
      asio::detached);
}

std::map<std::string, uint64_t> LiveRegistry::CountByState() const {
  std::map<std::string, uint64_t> out{{"running", 0}, {"paused", 0}};
  for (const auto& [id, e] : live_) ++out[LiveStateName(e->state)];
  return out;
}

std::map<std::string, NetCounters> LiveRegistry::NetworkCountersById() const {
  // One nft run per table (every sandbox of a driver shares one), not one
  // per sandbox: a scrape with many sandboxes stays one process.
  std::map<std::pair<std::string, std::string>, std::vector<std::pair<std::string, std::string>>>
      by_table;  // (nft, table) -> (sandbox id, tag)
  for (const auto& [id, e] : live_) {
    // (Not while an update changes the sandbox's network on a blocking thread.)
    if (!e->sb || e->gone || e->net_busy || e->network.mode == NetworkMode::kNone) continue;
    NetCounterSource src = e->sb->network_counter_source();
    if (src.table.empty()) continue;
    by_table[{src.nft_path, src.table}].emplace_back(id, src.tag);
  }
  std::map<std::string, NetCounters> out;
  for (const auto& [where, sandboxes] : by_table) {
    auto all = ReadNetCounters(where.first, where.second);
    if (!all.ok()) {
      spdlog::debug("network counters of table {}: {}", where.second, all.error().ToString());
      continue;
    }
    for (const auto& [id, tag] : sandboxes) out[id] = CountersOf(*all, tag);
  }
  return out;
}

// --- create ------------------------------------------------------------------

asio::awaitable<Result<LiveInfo>> LiveRegistry::Create(LiveCreateRequest req) {
  const auto t0 = std::chrono::steady_clock::now();
  if (draining_)
    co_return Fail(ErrorCode::kDraining, "sandbox create", "", "the daemon is shutting down");
  std::string image = req.image.value_or(opts_.default_image);
  std::string driver = req.driver.value_or(opts_.default_driver);
  if (image.empty()) co_return Bad("image", "no image: pass --image or start the daemon with one");
  if (auto v = ImageStore::ValidateName(image); !v.ok())
    co_return v.error().WithCode(ErrorCode::kInvalidArgument);
  if (driver != "ns" && driver != "vm") co_return Bad("driver", "expected ns or vm");
  if (req.on_timeout != "kill" && req.on_timeout != "pause")
    co_return Bad("on_timeout", "expected kill or pause");
  uint64_t timeout_s = req.timeout_s.value_or(opts_.default_timeout_s);
  if (timeout_s == 0) co_return Bad("timeout", "must be at least 1 second");
  timeout_s = std::min(timeout_s, opts_.max_timeout_s);
  for (const auto& kv : req.env) {
    if (kv.empty() || kv.front() == '=' || kv.find('=') == std::string::npos)
      co_return Bad("env", "expected KEY=VALUE, got '" + kv + "'");
  }
  if (live_.size() + creating_ >= opts_.max_sandboxes) {
    co_return Fail(ErrorCode::kBusy, "busy", "sandbox create",
                   "the daemon already has " + std::to_string(live_.size() + creating_) +
                       " live sandboxes (--max-sandboxes " + std::to_string(opts_.max_sandboxes) +
                       "); kill one or retry later");
  }
  // Published ports listen before anything is claimed: a port in use
  // refuses the create at once, naming it.
  auto published = PublishedPorts::Listen(io_, req.network.ports);
  if (!published.ok()) co_return published.error();
  ++creating_;
  struct Count {
    size_t& n;
    ~Count() { --n; }
  } count{creating_};

  pool::PoolRuntime& rt = pools_.runtime();
  if (!rt.store.Exists(image)) {
    auto pulled = co_await puller_.Pull(image);
    if (!pulled.ok()) {
      co_return Fail(ErrorCode::kNotFound, "no image", image,
                     "no such image, and " + ImagePuller::HowMissing(image) +
                         " failed: " + pulled.error().ToString());
    }
  }
  const std::string resolved = rt.store.Resolve(image);
  // The image's services (docs/services.md): a bad label refuses the create
  // (its runs are not affected), before any sandbox is claimed.
  std::optional<Image> img;
  std::vector<ServiceSpec> services;
  if (auto got = rt.store.Get(resolved); got.ok()) {
    img = std::move(*got);
    auto sv = ServicesOf(resolved, img->config);
    if (!sv.ok()) co_return sv.error();
    services = std::move(*sv);
  }
  pool::WarmPool& pool = pools_.Get(resolved, driver);
  // The claimed sandbox's replacement starts when this create ends, whatever
  // its outcome (WarmPool::Claim leaves it to us).
  struct RefillAtEnd {
    pool::WarmPool& pool;
    ~RefillAtEnd() { pool.Refill(); }
  } refill_at_end{pool};

  // Claim: an idle sandbox (another one if it does not answer the claim).
  pool::Lease lease;
  for (int attempt = 0;; ++attempt) {
    auto l = co_await pool.Claim();
    if (!l.ok()) co_return l.error();
    json claim = {{"env", req.env}, {"persist", true}};
    auto sent = co_await l->conn->Send(proto::FrameType::kClaim, claim.dump());
    Result<proto::Frame> reply = sent.ok() ? Result<proto::Frame>(proto::Frame{}) : sent.error();
    if (sent.ok()) {
      // Bounded: a hung agent closes the connection at the deadline.
      auto dog = std::make_shared<asio::steady_timer>(io_, opts_.claim_timeout);
      pool::AgentConn* c = l->conn.get();
      auto armed = std::make_shared<bool>(true);
      dog->async_wait([armed, c](error_code ec) {
        if (!ec && *armed) c->Close();
      });
      reply = co_await l->conn->ReadFrame();
      *armed = false;
      dog->cancel();
    }
    if (reply.ok() && reply->type == proto::FrameType::kClaimReply) {
      lease = std::move(*l);
      break;
    }
    Error why = !reply.ok() ? reply.error()
                            : Fail("claim", l->sandbox->id(),
                                   reply->type == proto::FrameType::kFailure
                                       ? "the agent refused the claim: " + reply->payload
                                       : std::string("unexpected answer to the claim"));
    if (!l->hit || attempt >= 2) {
      pool.Evict(std::move(*l), why);
      co_return why.Wrap("claim a sandbox of " + resolved);
    }
    pool.Evict(std::move(*l), why);
  }
  lease.conn.reset();
  std::shared_ptr<Sandbox> sb(std::move(lease.sandbox));
  // (Every blocking call is a named std::function before its co_await: GCC 12
  // destroys a lambda temporary of a co_await expression twice, and with it
  // a captured shared_ptr's reference.)
  auto destroy_on_error = [&](Error e) -> asio::awaitable<Result<LiveInfo>> {
    std::function<Result<void>()> fn = [sb]() { return sb->Destroy(); };
    co_await OnBlockingThread(rt, std::move(fn));
    co_return e;
  };
  if (req.memory_bytes || req.pids || req.cpus) {
    Limits l = pools_.defaults().limits;
    if (req.memory_bytes) l.memory_bytes = *req.memory_bytes;
    if (req.pids) l.pids = *req.pids;
    if (req.cpus) l.cpus = *req.cpus;
    if (auto r = sb->SetLimits(l); !r.ok()) co_return co_await destroy_on_error(r.error());
  }
  // Every later operation connects to live_endpoint() (a vm's bridge, which
  // takes over the agent's port now that the pool's exchange is over).
  // (A named function and result: GCC 12 frees a temporary twice when
  // co_await sits in an if's init-statement.)
  // Only a driver whose live endpoint differs (a vm's bridge) has anything
  // to start: the ns driver's claim does not pay for a thread hop.
  if (req.network.mode != NetworkMode::kNone) {
    // Pool sandboxes are made without a network; the claimed one gets the
    // create's (docs/network.md).
    NetworkSpec net = req.network;
    net.ports.clear();  // served by the daemon (published_ports.h), not the network
    std::function<Result<void>()> attach = [sb, net]() { return sb->AttachNetwork(net); };
    Result<void> attached = co_await OnBlockingThread(rt, attach);
    if (!attached.ok()) co_return co_await destroy_on_error(attached.error());
  }
  if (sb->live_endpoint().socket_path != sb->endpoint().socket_path) {
    std::function<Result<void>()> serve_live = [sb]() { return sb->ServeLive(); };
    Result<void> served = co_await OnBlockingThread(rt, serve_live);
    if (!served.ok()) co_return co_await destroy_on_error(served.error());
  }
  if (!services.empty()) {
    // The create's env for the image's services, bound late (they started
    // before this claim): /run/warmbox/envs.json, before the create returns.
    // Images without services do not pay these two agent round trips.
    asio::any_io_executor ex = io_.get_executor();
    const AgentEndpoint ep = sb->live_endpoint();
    if (!ServesBeforeClaim(*sb)) {
      // A driver with no live operations before a claim (vm): they start now.
      auto started = co_await StartServices(ex, ep, *img, services);
      if (!started.ok()) co_return co_await destroy_on_error(started.error());
      // And the create waits for their readiness (the pool could not).
      std::function<bool()> stopping = [&rt] { return rt.stopping; };
      auto ready = co_await AwaitServicesReady(ex, ep, resolved, services, std::move(stopping));
      if (!ready.ok()) co_return co_await destroy_on_error(ready.error());
    }
    auto wrote = co_await WriteEnvFile(ex, ep, req.env);
    if (!wrote.ok()) co_return co_await destroy_on_error(wrote.error());
  }
  std::vector<ServiceState> service_states;
  if (!services.empty()) {
    asio::any_io_executor ex = io_.get_executor();
    const AgentEndpoint ep = sb->live_endpoint();
    auto listed = co_await ListServices(ex, ep);
    if (!listed.ok()) co_return co_await destroy_on_error(listed.error());
    service_states = std::move(*listed);
  }
  auto hex = RandomHex(16);
  if (!hex.ok()) co_return co_await destroy_on_error(hex.error());

  auto e = std::make_shared<Entry>(io_);
  e->sb = sb;
  e->network = req.network;
  e->dir = sb->host_dir();
  LiveRecord& r = e->rec;
  r.id = *hex;
  auto token = RandomHex(16);
  if (!token.ok()) co_return co_await destroy_on_error(token.error());
  r.access_token = *token;
  r.sandbox = sb->id();
  r.image = resolved;
  r.driver = driver;
  r.created_ms = NowMs();
  r.expires_ms = r.created_ms + static_cast<int64_t>(timeout_s) * 1000;
  r.on_timeout = req.on_timeout;
  r.metadata = req.metadata;
  r.env = req.env;
  r.user = req.user;
  r.cwd = req.cwd;
  const Limits& d = pools_.defaults().limits;
  r.memory_bytes = req.memory_bytes.value_or(d.memory_bytes);
  r.pids = req.pids.value_or(d.pids);
  r.cpus = req.cpus.value_or(d.cpus);
  // The image's config fills what the request left out, as for a pool run:
  // its User and WorkingDir are the default user and cwd, its
  // Entrypoint+Cmd the deferred main.
  r.services = std::move(service_states);
  if (img) {
    if (r.user.empty()) r.user = img->config.user;
    if (r.cwd.empty()) r.cwd = img->config.working_dir;
    if (!req.main) {
      r.main = img->config.entrypoint;
      r.main.insert(r.main.end(), img->config.cmd.begin(), img->config.cmd.end());
    }
  }
  if (req.main) r.main = *req.main;
  r.host_pid = sb->host_pid();
  r.host_start = ProcessStartTime(r.host_pid);
  r.network = req.network;
  if (draining_) {
    co_return co_await destroy_on_error(
        Fail(ErrorCode::kDraining, "sandbox create", "", "the daemon is shutting down"));
  }
  if (auto w = WriteLiveRecord(e->dir, r); !w.ok()) co_return co_await destroy_on_error(w.error());
  live_[r.id] = e;
  e->published = std::move(*published);
  e->published->Start(*this, r.id);
  ArmTimer(e);
  WatchLiveness(e);
  FollowServices(e);
  if (!r.main.empty()) {
    if (auto m = co_await StartMain(e); !m.ok()) {
      spdlog::warn("live sandbox {}: its main could not start: {}", r.id, m.error().ToString());
    }
  }
  // claim_us: the daemon's own time for the create (bench/live_run.py).
  const auto claim_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  LogEvent(spdlog::level::info, "sandbox_create",
           {{"id", r.id},
            {"image", resolved},
            {"driver", driver},
            {"sandbox", r.sandbox},
            {"claim_us", std::to_string(claim_us), true}});
  // No usage figures in the create's answer (a fresh sandbox's are about
  // zero; reading them is a dozen cgroup files on the claim path).
  co_return InfoOf(*e, /*usage=*/false);
}

// --- the main process and its log ----------------------------------------------

asio::awaitable<Result<void>> LiveRegistry::StartMain(EntryPtr e) {
  // Named: GCC 12 destroys a temporary bound to a coroutine's reference
  // parameter twice.
  const AgentEndpoint ep = e->sb->live_endpoint();
  auto conn = co_await pool::AgentConn::Connect(io_.get_executor(), ep);
  if (!conn.ok()) co_return conn.error();
  proto::ExecRequest er;
  er.argv = e->rec.main;
  er.cwd = e->rec.cwd;
  er.user = e->rec.user;
  auto prepared = e->sb->PrepareExec(er);
  if (!prepared.ok()) co_return prepared.error();
  json j = json::parse(proto::ToJson(*prepared));
  j["keep"] = true;
  j["tag"] = "main";
  j["stdin"] = false;
  auto sent = co_await (*conn)->Send(proto::FrameType::kExec, j.dump());
  if (!sent.ok()) co_return sent.error();
  auto f = co_await (*conn)->ReadFrame();
  if (!f.ok()) co_return f.error();
  if (f->type == proto::FrameType::kExit) {
    // Not started (no such program, say): recorded as its exit.
    auto x = proto::ParseExecExit(f->payload);
    e->rec.main_exit_code = x.ok() ? x->exit_code : 127;
    Persist(*e);
    co_return Ok();
  }
  if (f->type != proto::FrameType::kStarted) {
    co_return Fail("start main", e->rec.id,
                   f->type == proto::FrameType::kFailure || f->type == proto::FrameType::kOpError
                       ? "the agent refused: " + f->payload
                       : std::string("unexpected answer from the agent"));
  }
  auto started = ParseJsonBounded(f->payload, "S");
  if (!started.ok() || !started->is_object() || !started->contains("pid"))
    co_return Fail("start main", e->rec.id, "bad S frame: " + f->payload);
  e->rec.main_pid = (*started)["pid"].get<int64_t>();
  e->offset = started->value("offset", uint64_t{0});
  e->rec.main_offset = e->offset;
  Persist(*e);
  std::shared_ptr<pool::AgentConn> c(std::move(*conn));
  e->main_conn = c;
  asio::co_spawn(io_, FollowMain(e, c), asio::detached);
  co_return Ok();
}

asio::awaitable<Result<std::shared_ptr<pool::AgentConn>>> LiveRegistry::AttachMain(EntryPtr e) {
  // Named: GCC 12 destroys a temporary bound to a coroutine's reference
  // parameter twice.
  const AgentEndpoint ep = e->sb->live_endpoint();
  auto conn = co_await pool::AgentConn::Connect(io_.get_executor(), ep);
  if (!conn.ok()) co_return conn.error();
  json a = {{"pid", e->rec.main_pid}, {"from", e->rec.main_offset}};
  auto sent = co_await (*conn)->Send(proto::FrameType::kAttach, a.dump());
  if (!sent.ok()) co_return sent.error();
  auto f = co_await (*conn)->ReadFrame();
  if (!f.ok()) co_return f.error();
  if (f->type != proto::FrameType::kStarted) {
    co_return Fail("attach main", e->rec.id,
                   f->type == proto::FrameType::kFailure || f->type == proto::FrameType::kOpError
                       ? "the agent refused: " + f->payload
                       : std::string("unexpected answer from the agent"));
  }
  auto started = ParseJsonBounded(f->payload, "S");
  uint64_t off = e->rec.main_offset;
  if (started.ok() && started->is_object()) off = started->value("offset", off);
  // Partial lines logged before were lost with the old attachment.
  e->partial[0].clear();
  e->partial[1].clear();
  e->has_partial[0] = e->has_partial[1] = false;
  if (off > e->rec.main_offset) {
    EmitLine(*e, true,
             "[warmbox: " + std::to_string(off - e->rec.main_offset) +
                 " bytes of output were lost (the agent's ring no longer held them)]");
  }
  e->offset = off;
  e->rec.main_offset = off;
  std::shared_ptr<pool::AgentConn> c(std::move(*conn));
  e->main_conn = c;
  co_return c;
}

asio::awaitable<void> LiveRegistry::FollowMain(EntryPtr e, std::shared_ptr<pool::AgentConn> conn) {
  int failures = 0;
  for (;;) {
    auto f = co_await conn->ReadFrame();
    if (e->gone) co_return;
    if (f.ok() && (f->type == proto::FrameType::kStdout || f->type == proto::FrameType::kStderr)) {
      failures = 0;
      OnOutput(*e, f->type == proto::FrameType::kStderr, f->payload);
      PersistSoon(e);
      continue;
    }
    if (f.ok() && f->type == proto::FrameType::kExit) {
      FlushPartials(*e);
      auto x = proto::ParseExecExit(f->payload);
      e->rec.main_exit_code = x.ok() ? x->exit_code : -1;
      e->rec.main_offset = e->offset;
      Persist(*e);
      e->main_conn.reset();
      co_return;
    }
    // The attachment dropped while the sandbox lives: attach again from what
    // is logged (bounded retries; a dead sandbox ends it).
    conn->Close();
    if (draining_ || ++failures > 20) {
      if (!draining_) spdlog::warn("live sandbox {}: lost its main's output", e->rec.id);
      co_return;
    }
    asio::steady_timer wait(io_, std::chrono::milliseconds(100 * failures));
    error_code ec;
    co_await wait.async_wait(redirect_error(use_awaitable, ec));
    if (e->gone || draining_) co_return;
    auto again = co_await AttachMain(e);
    if (!again.ok()) {
      spdlog::debug("live sandbox {}: re-attach: {}", e->rec.id, again.error().ToString());
      continue;
    }
    conn = *again;
  }
}

void LiveRegistry::OnOutput(Entry& e, bool is_stderr, std::string_view data) {
  const int s = is_stderr ? 1 : 0;
  size_t pos = 0;
  while (pos < data.size()) {
    if (!e.has_partial[s]) {
      e.has_partial[s] = true;
      e.partial_start[s] = e.offset + pos;
    }
    size_t nl = data.find('\n', pos);
    size_t end = nl == std::string_view::npos ? data.size() : nl;
    size_t take = std::min(end - pos, kMaxPartialLine - e.partial[s].size());
    e.partial[s].append(data.substr(pos, take));
    pos += take;
    if (e.partial[s].size() >= kMaxPartialLine || (pos == nl && nl != std::string_view::npos)) {
      EmitLine(e, is_stderr, e.partial[s]);
      e.partial[s].clear();
      e.has_partial[s] = false;
      if (pos == nl) ++pos;
    }
  }
  e.offset += data.size();
  uint64_t logged = e.offset;
  for (int i = 0; i < 2; ++i) {
    if (e.has_partial[i]) logged = std::min(logged, e.partial_start[i]);
  }
  e.rec.main_offset = logged;
}

void LiveRegistry::FlushPartials(Entry& e) {
  for (int s = 0; s < 2; ++s) {
    if (e.has_partial[s]) EmitLine(e, s == 1, e.partial[s]);
    e.partial[s].clear();
    e.has_partial[s] = false;
  }
}

void LiveRegistry::EmitLine(Entry& e, bool is_stderr, const std::string& text) {
  std::string line = Rfc3339Utc(NowMs()) + (is_stderr ? " stderr " : " stdout ") + text;
  if (!e.dir.empty()) {
    const std::string path = e.dir + "/main.log";
    if (e.log && e.log_size + line.size() + 1 > opts_.log_half_bytes) {
      // Rotation: main.log becomes main.log.1 (the older half is dropped).
      e.log.reset();
      if (::rename(path.c_str(), (path + ".1").c_str()) != 0) {
        spdlog::debug("live sandbox {}: rotate main.log: {}", e.rec.id, std::strerror(errno));
      }
    }
    if (!e.log) {
      e.log = UniqueFd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
      struct stat st;
      e.log_size = e.log && ::fstat(e.log.get(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    }
    if (e.log) {
      std::string out = line + "\n";
      if (WriteAll(e.log.get(), out).ok()) e.log_size += out.size();
    }
  }
  auto followers = e.followers;  // a callback may unsubscribe
  for (auto& [n, fn] : followers) fn(line);
}

void LiveRegistry::EndFollowers(Entry& e) {
  auto followers = std::move(e.followers);
  e.followers.clear();
  for (auto& [n, fn] : followers) fn(std::nullopt);
}

Result<std::vector<std::string>> LiveRegistry::Logs(const std::string& id, size_t tail) const {
  EntryPtr e = WB_TRY(Find(id));
  std::vector<std::string> lines;
  for (const char* name : {"/main.log.1", "/main.log"}) {
    auto text = ReadFile(e->dir + name);
    if (!text.ok()) continue;
    for (auto& l : Split(*text, '\n')) {
      if (!l.empty()) lines.push_back(std::move(l));
    }
  }
  if (tail && lines.size() > tail) lines.erase(lines.begin(), lines.end() - tail);
  return lines;
}

Result<std::shared_ptr<void>> LiveRegistry::FollowLogs(const std::string& id, LineFn on_line) {
  EntryPtr e = WB_TRY(Find(id));
  uint64_t n = e->next_follower++;
  e->followers[n] = std::move(on_line);
  std::weak_ptr<Entry> weak = e;
  return std::shared_ptr<void>(nullptr, [weak, n](void*) {
    if (auto p = weak.lock()) p->followers.erase(n);
  });
}

// --- the rest of the lifecycle -------------------------------------------------

std::vector<LiveInfo> LiveRegistry::List(const std::map<std::string, std::string>& filter) const {
  std::vector<LiveInfo> out;
  for (const auto& [id, e] : live_) {
    bool match = true;
    for (const auto& [k, v] : filter) {
      auto it = e->rec.metadata.find(k);
      match = match && it != e->rec.metadata.end() && it->second == v;
    }
    if (match) out.push_back(InfoOf(*e));
  }
  std::stable_sort(out.begin(), out.end(), [](const LiveInfo& a, const LiveInfo& b) {
    return a.created_ms != b.created_ms ? a.created_ms < b.created_ms : a.id < b.id;
  });
  return out;
}

Result<LiveInfo> LiveRegistry::Inspect(const std::string& id) const {
  EntryPtr e = WB_TRY(Find(id));
  return InfoOf(*e);
}

Result<LiveInfo> LiveRegistry::Lookup(const std::string& id) const {
  EntryPtr e = WB_TRY(Find(id));
  return InfoOf(*e, /*usage=*/false);
}

Result<LiveInfo> LiveRegistry::SetTimeout(const std::string& id, uint64_t seconds) {
  EntryPtr e = WB_TRY(Find(id));
  if (seconds == 0) return Bad("timeout", "must be at least 1 second");
  seconds = std::min(seconds, opts_.max_timeout_s);
  e->rec.expires_ms = NowMs() + static_cast<int64_t>(seconds) * 1000;
  Persist(*e);
  ArmTimer(e);
  return InfoOf(*e);
}

asio::awaitable<Result<void>> LiveRegistry::Kill(const std::string& id) {
  auto e = Find(id);
  if (!e.ok()) co_return e.error();
  live_.erase(id);
  co_return co_await Destroy(*e, "killed");
}

asio::awaitable<Result<void>> LiveRegistry::Destroy(EntryPtr e, std::string why) {
  e->gone = true;
  if (e->published) e->published->Close();
  e->state = LiveState::kDead;
  e->dead_reason = why;
  e->timer.cancel();
  e->flush_timer.cancel();
  if (e->liveness) {
    error_code ignored;
    e->liveness->cancel(ignored);
  }
  if (e->main_conn) e->main_conn->Close();
  e->log.reset();
  EndFollowers(*e);
  std::shared_ptr<Sandbox> sb = std::move(e->sb);
  if (!sb) co_return Ok();
  const bool paused = e->rec.state == "paused";
  std::function<Result<void>()> fn = [sb, paused]() -> Result<void> {
    // A frozen v1 cgroup would hold SIGKILL: thaw first.
    if (paused) (void)sb->Pause(false);
    return sb->Destroy();
  };
  sb.reset();  // the last reference goes on the blocking thread, with fn
  auto r = co_await OnBlockingThread(pools_.runtime(), std::move(fn));
  LogEvent(spdlog::level::info, "sandbox_end", {{"id", e->rec.id}, {"reason", why}});
  if (!r.ok()) spdlog::warn("live sandbox {}: teardown: {}", e->rec.id, r.error().ToString());
  co_return r;
}

asio::awaitable<Result<void>> LiveRegistry::Pause(const std::string& id) {
  auto e = Find(id);
  if (!e.ok()) co_return e.error();
  if ((*e)->state == LiveState::kDead)
    co_return Fail(ErrorCode::kFailedPrecondition, "pause", id, "the sandbox is dead");
  if ((*e)->state == LiveState::kPaused)
    co_return Fail(ErrorCode::kFailedPrecondition, "pause", id, "the sandbox is already paused");
  co_return co_await SetPaused(*e, true);
}

asio::awaitable<Result<void>> LiveRegistry::Resume(const std::string& id) {
  auto e = Find(id);
  if (!e.ok()) co_return e.error();
  if ((*e)->state != LiveState::kPaused)
    co_return Fail(ErrorCode::kFailedPrecondition, "resume", id, "the sandbox is not paused");
  co_return co_await SetPaused(*e, false);
}

asio::awaitable<Result<LiveInfo>> LiveRegistry::UpdateNetwork(const std::string& id,
                                                              NetworkSpec spec) {
  auto found = Find(id);
  if (!found.ok()) co_return found.error();
  EntryPtr e = *found;
  if (e->state == LiveState::kDead)
    co_return Fail(ErrorCode::kFailedPrecondition, "update network", id, "the sandbox is dead");
  if (!spec.ports.empty())
    co_return Bad("network.ports", "published ports are set at create, not updated");
  if (spec.mode == NetworkMode::kNone) {
    if (e->network.mode == NetworkMode::kNone) co_return InfoOf(*e);
    co_return Fail(ErrorCode::kFailedPrecondition, "update network", id,
                   "a running sandbox's network cannot be taken away; deny everything "
                   "instead (deny_out [\"0.0.0.0/0\", \"::/0\"])");
  }
  if (e->net_busy)
    co_return Fail(ErrorCode::kFailedPrecondition, "update network", id,
                   "another network update of this sandbox is in flight");
  std::shared_ptr<Sandbox> sb = e->sb;
  if (!sb || e->gone) co_return NotFound(id);
  // A sandbox without a network gets one (the attach a create does);
  // otherwise one nft transaction replaces its sets and chain.
  std::function<Result<void>()> fn;
  if (e->network.mode == NetworkMode::kNone) {
    fn = [sb, spec]() { return sb->AttachNetwork(spec); };
  } else {
    fn = [sb, spec]() { return sb->UpdateNetwork(spec.allow_out, spec.deny_out); };
    spec.ports = e->network.ports;  // they stay
  }
  e->net_busy = true;
  auto r = co_await OnBlockingThread(pools_.runtime(), std::move(fn));
  e->net_busy = false;
  if (!r.ok()) co_return r.error();
  if (e->gone) co_return NotFound(id);
  e->network = std::move(spec);
  e->rec.network = e->network;
  Persist(*e);  // a new daemon attaches this policy (AdoptAll)
  LogEvent(spdlog::level::info, "sandbox_network",
           {{"id", id},
            {"allow_out", std::to_string(e->network.allow_out.size()), true},
            {"deny_out", std::to_string(e->network.deny_out.size()), true}});
  co_return InfoOf(*e);
}

asio::awaitable<Result<void>> LiveRegistry::SetPaused(EntryPtr e, bool paused) {
  std::shared_ptr<Sandbox> sb = e->sb;
  if (!sb || e->gone) co_return NotFound(e->rec.id);
  std::function<Result<void>()> fn = [sb, paused]() -> Result<void> { return sb->Pause(paused); };
  auto r = co_await OnBlockingThread(pools_.runtime(), std::move(fn));
  if (!r.ok()) co_return r.error();
  if (e->gone) co_return Ok();
  e->state = paused ? LiveState::kPaused : LiveState::kRunning;
  e->rec.state = paused ? "paused" : "running";
  Persist(*e);
  if (!paused && e->attach_main_on_resume) {
    e->attach_main_on_resume = false;
    ReattachMain(e);
  }
  co_return Ok();
}

asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> LiveRegistry::Connect(
    const std::string& id) {
  auto e = Find(id);
  if (!e.ok()) co_return e.error();
  if ((*e)->state == LiveState::kPaused) {
    co_return Fail(ErrorCode::kFailedPrecondition, "sandbox", id,
                   "the sandbox is paused; resume it first");
  }
  if ((*e)->state == LiveState::kDead || !(*e)->sb) {
    co_return Fail(ErrorCode::kFailedPrecondition, "sandbox", id,
                   "the sandbox is dead: " + (*e)->dead_reason);
  }
  // (Named, not temporaries in the co_await: GCC 12 destroys a temporary
  // bound to a coroutine's reference parameter twice, a double free of the
  // endpoint's path.)
  asio::any_io_executor ex = io_.get_executor();
  const AgentEndpoint ep = (*e)->sb->live_endpoint();
  auto conn = co_await pool::AgentConn::Connect(ex, ep);
  co_return conn;
}

// --- services -------------------------------------------------------------------

void LiveRegistry::FollowServices(const EntryPtr& e) {
  for (size_t i = 0; i < e->rec.services.size(); ++i) {
    if (e->rec.services[i].exit_code) continue;
    asio::co_spawn(io_, FollowService(e, i), asio::detached);
  }
}

asio::awaitable<void> LiveRegistry::FollowService(EntryPtr e, size_t index) {
  // Attached from now on (its output stays in its agent ring, docs/services.md),
  // only for its exit: X, recorded in live.json and shown by inspect.
  int failures = 0;
  while (!e->gone && !draining_ && e->sb && failures <= 20) {
    const AgentEndpoint ep = e->sb->live_endpoint();
    auto conn = co_await pool::AgentConn::Connect(io_.get_executor(), ep);
    if (conn.ok()) {
      json a = {{"pid", e->rec.services[index].pid}, {"from", -1}};
      const std::string payload = a.dump();
      auto sent = co_await (*conn)->Send(proto::FrameType::kAttach, payload);
      while (sent.ok()) {
        auto f = co_await (*conn)->ReadFrame();
        if (e->gone) co_return;
        if (!f.ok()) break;
        if (f->type == proto::FrameType::kExit) {
          auto x = proto::ParseExecExit(f->payload);
          e->rec.services[index].exit_code = x.ok() ? x->exit_code : -1;
          spdlog::info("live sandbox {}: service {} (pid {}) exited: {}", e->rec.id,
                       e->rec.services[index].name, e->rec.services[index].pid,
                       *e->rec.services[index].exit_code);
          Persist(*e);
          co_return;
        }
        if (f->type == proto::FrameType::kOpError || f->type == proto::FrameType::kFailure) {
          // Not known to the agent (an exit it no longer retains): unknown.
          e->rec.services[index].exit_code = -1;
          Persist(*e);
          co_return;
        }
        failures = 0;  // output, S: it is attached
      }
    }
    // Dropped while the sandbox lives (paused, a vm bridge's restart): again.
    asio::steady_timer wait(io_, std::chrono::milliseconds(100 * ++failures));
    error_code ec;
    co_await wait.async_wait(redirect_error(use_awaitable, ec));
  }
}

// --- restart survival ------------------------------------------------------------

void LiveRegistry::ReattachMain(const EntryPtr& e) {
  if (!e->rec.main_pid || e->rec.main_exit_code) return;
  asio::co_spawn(
      io_,
      [this, e]() -> asio::awaitable<void> {
        auto c = co_await AttachMain(e);
        if (!c.ok()) {
          spdlog::warn("live sandbox {}: re-attach to its main: {}", e->rec.id,
                       c.error().ToString());
          co_return;
        }
        co_await FollowMain(e, *c);
      },
      asio::detached);
}

void LiveRegistry::AdoptNetwork(Entry& e) {
  // The dead daemon's helpers (slirp4netns, dnsmasq) died with it, and its
  // listeners: the sandbox's netns kept only lo. The same network again: a
  // new helper makes a new interface in it, with the recorded policy (the
  // process's first egress sandbox starts its nft table afresh, so the dead
  // daemon's rules go). Failures leave the sandbox running without it.
  const NetworkSpec& want = e.rec.network;
  if (want.mode != NetworkMode::kNone) {
    NetworkSpec net = want;
    net.ports.clear();  // the daemon's listeners, below
    if (auto a = e.sb->AttachNetwork(net); !a.ok()) {
      spdlog::warn("live sandbox {}: its network ({}) cannot be attached again: {}", e.rec.id,
                   NetworkModeName(want.mode), a.error().ToString());
    } else {
      e.network = want;
    }
  }
  if (!want.ports.empty()) {
    auto published = PublishedPorts::Listen(io_, want.ports);
    if (!published.ok()) {
      spdlog::warn("live sandbox {}: its ports cannot be published again: {}", e.rec.id,
                   published.error().ToString());
    } else {
      e.published = std::move(*published);
      e.network.ports = want.ports;
    }
  }
}

void LiveRegistry::AdoptAll() {
  const std::string base = SandboxesDir(opts_.state_dir);
  pool::PoolRuntime& rt = pools_.runtime();
  for (const auto& name : [&] {
         std::vector<std::string> names;
         if (DIR* d = ::opendir(base.c_str())) {
           while (dirent* ent = ::readdir(d)) {
             if (ent->d_name[0] != '.') names.push_back(ent->d_name);
           }
           ::closedir(d);
         }
         return names;
       }()) {
    const std::string dir = base + "/" + name;
    if (!PathExists(dir + "/" + kLiveRecordFile) || !LiveSandboxAlive(dir)) continue;
    auto rec = ReadLiveRecord(dir);
    if (!rec.ok()) {
      spdlog::warn("live sandbox in {}: {}; left as it is", dir, rec.error().ToString());
      continue;
    }
    auto driver = rt.drivers(rec->driver);
    Result<std::unique_ptr<Sandbox>> sb =
        driver.ok()
            ? (*driver)->Adopt(AdoptSpec{dir, rec->image, rec->host_pid, rec->host_start, Limits{}})
            : Result<std::unique_ptr<Sandbox>>(driver.error());
    if (!sb.ok()) {
      spdlog::warn("live sandbox {}: cannot take it over: {}; left running", rec->id,
                   sb.error().ToString());
      continue;
    }
    const bool bridged = (*sb)->live_endpoint().socket_path != (*sb)->endpoint().socket_path;
    const bool paused = rec->state == "paused";
    if (bridged && !paused) {
      // A vm sandbox: a new bridge on its port (live.sock), which
      // resynchronises the port after the dead daemon's bridge (proto/mux.h).
      // Here, before the socket serves, so that no operation finds it
      // missing; bounded (10 s). A failure leaves the sandbox listed (and
      // killable); its operations fail until it is killed. (A paused VM
      // cannot answer: its bridge starts when it is resumed, VmSandbox::Pause.)
      if (auto served = (*sb)->ServeLive(); !served.ok()) {
        spdlog::warn("live sandbox {}: its channels cannot be served: {}", rec->id,
                     served.error().ToString());
      }
    }
    auto e = std::make_shared<Entry>(io_);
    e->sb = std::shared_ptr<Sandbox>(std::move(*sb));
    e->dir = dir;
    e->rec = std::move(*rec);
    AdoptNetwork(*e);
    e->state = e->rec.state == "paused" ? LiveState::kPaused : LiveState::kRunning;
    e->offset = e->rec.main_offset;
    live_[e->rec.id] = e;
    if (e->published) e->published->Start(*this, e->rec.id);
    ArmTimer(e);
    WatchLiveness(e);
    if (bridged && paused) {
      e->attach_main_on_resume = true;
    } else {
      ReattachMain(e);
      FollowServices(e);
    }
    spdlog::info("live sandbox {} taken over (sandbox {}, pid {})", e->rec.id, e->rec.sandbox,
                 e->rec.host_pid);
  }
}

void LiveRegistry::Shutdown(bool keep) {
  draining_ = true;
  auto entries = std::move(live_);
  live_.clear();
  for (auto& [id, e] : entries) {
    if (keep) {
      e->timer.cancel();
      e->flush_timer.cancel();
      Persist(*e);  // the log offset as of now
      e->gone = true;
      // A published port is the daemon's own listener: it goes with this
      // daemon (the next one publishes it again: AdoptNetwork), as does the
      // network's helper (Abandon keeps the sandbox, not its network).
      if (e->published) e->published->Close();
      if (e->main_conn) e->main_conn->Close();
      EndFollowers(*e);
      if (e->sb) e->sb->Abandon();
      e->sb.reset();
      continue;
    }
    // Counted now, before the pools' shutdown waits for what is in flight.
    pools_.runtime().in_flight.Add();
    asio::co_spawn(
        io_,
        [this, e]() -> asio::awaitable<void> {
          (void)co_await Destroy(e, "daemon stopped");
          pools_.runtime().in_flight.Done();
        },
        asio::detached);
  }
}

}  // namespace wb::daemon
