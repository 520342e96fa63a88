// filesystem.Filesystem over Connect (docs/e2b.md, "envd: files"): each call
// is one or a few agent file operations (L frames, docs/protocol.md
// "Files (L)") done with the caller's identity; WatchDir is a server stream
// fed by an agent watch; the CreateWatcher trio keeps an agent watch per
// watcher in the daemon, its events buffered until fetched.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <memory>

#include "base/fs.h"
#include "base/strings.h"
#include "daemon/e2b/connect.h"
#include "daemon/e2b/envd.h"
#include "daemon/e2b/filesystem_internal.h"
#include "daemon/e2b/fs_messages.h"
#include "daemon/http_live.h"
#include "daemon/http_respond.h"

namespace wb::daemon::e2b {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

// --- agent file operations ----------------------------------------------------------

asio::awaitable<Result<AgentFileConn>> OpenAgentFileOp(LiveService& live, const std::string& id,
                                                       const proto::FileRequest& fr) {
  auto conn = co_await live.Connect(id);
  if (!conn.ok()) co_return conn.error();
  const std::string payload = proto::ToJson(fr);
  auto sent = co_await (*conn)->Send(proto::FrameType::kFile, payload);
  if (!sent.ok()) co_return sent.error().WithCode(ErrorCode::kUnavailable);
  auto f = co_await (*conn)->ReadFrame();
  if (!f.ok()) co_return f.error().WithCode(ErrorCode::kUnavailable);
  if (f->type != proto::FrameType::kFileReply) co_return AgentError(*f, fr.op.c_str());
  co_return AgentFileConn{std::move(*conn), std::move(f->payload)};
}

asio::awaitable<Result<std::string>> AgentFileOp(LiveService& live, const std::string& id,
                                                 const proto::FileRequest& fr) {
  auto op = co_await OpenAgentFileOp(live, id, fr);
  if (!op.ok()) co_return op.error();
  op->conn->Close();
  co_return std::move(op->reply);
}

asio::awaitable<Result<proto::FileStat>> AgentStat(LiveService& live, const std::string& id,
                                                   const std::string& path,
                                                   const std::string& user) {
  proto::FileRequest fr;
  fr.op = "stat";
  fr.path = path;
  fr.user = user;
  auto reply = co_await AgentFileOp(live, id, fr);
  if (!reply.ok()) co_return reply.error();
  auto st = proto::ParseFileStat(*reply);
  if (!st.ok()) co_return st.error().WithCode(ErrorCode::kUnavailable);
  co_return std::move(*st);
}

namespace {

// A path of a request, resolved as envd does (relative: under the user's
// home); trailing slashes go (the agent builds event paths from it).
std::string FsPath(std::string_view p, std::string_view user) {
  std::string r = ResolvePath(p, user);
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  return r;
}

// The agent's watch of a directory, answered ({}) and ready for V frames.
asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> OpenWatch(LiveService& live,
                                                                    const std::string& id,
                                                                    const std::string& path,
                                                                    const std::string& user,
                                                                    bool recursive) {
  // envd watches directories only: not_found, or invalid_argument for a file.
  auto st = co_await AgentStat(live, id, path, user);
  if (!st.ok()) co_return st.error();
  if (st->type != "dir") {
    co_return Fail(ErrorCode::kInvalidArgument, "watch", path, "not a directory");
  }
  proto::FileRequest fr;
  fr.op = "watch";
  fr.path = path;
  fr.user = user;
  fr.recursive = recursive;
  auto op = co_await OpenAgentFileOp(live, id, fr);
  if (!op.ok()) co_return op.error();
  co_return std::move(op->conn);
}

struct WatchSpec {
  std::string sandbox, root, user;
  bool include_entry = false;
};

// The FilesystemEvent JSONs of a V frame. With include_entry, each event
// whose path still exists gets its EntryInfo (one stat each; a path gone
// since, or a remove or rename, gets none).
asio::awaitable<std::vector<std::string>> ConvertEvents(LiveService& live, const WatchSpec& w,
                                                        const std::vector<proto::WatchEvent>& evs) {
  std::vector<std::string> out;
  for (const auto& e : evs) {
    const char* type = EventTypeName(e.type);
    if (!type) continue;
    std::optional<proto::FileStat> entry;
    if (w.include_entry && e.type != "remove" && e.type != "rename") {
      auto st = co_await AgentStat(live, w.sandbox, e.path, w.user);
      if (st.ok()) entry = std::move(*st);
    }
    out.push_back(FilesystemEventJson(RelativeName(w.root, e.path), type, entry));
  }
  co_return out;
}

// --- CreateWatcher / GetWatcherEvents / RemoveWatcher --------------------------------

// One watcher: its agent watch runs in its own coroutine (RunWatcher), which
// buffers the events here until GetWatcherEvents takes them.
struct Watcher {
  std::string id;
  WatchSpec spec;
  std::deque<std::string> events;  // FilesystemEvent JSONs
  size_t bytes = 0;
  std::optional<Error> failed;  // the watch ended: reported by GetWatcherEvents
  Clock::time_point last_used = Clock::now();
  bool removed = false;
  asio::steady_timer* wake = nullptr;  // RunWatcher's, while it runs
};

// Every live watcher, by id. Touched only on the daemon's event loop. An
// entry is removed by RemoveWatcher, or when its RunWatcher frame ends or is
// destroyed (the io_context's end): then nothing here refers to the loop.
std::map<std::string, std::shared_ptr<Watcher>>& Watchers() {
  static std::map<std::string, std::shared_ptr<Watcher>> m;
  return m;
}

// Unregisters a watcher when RunWatcher's frame goes, run or not.
class Unregister {
 public:
  explicit Unregister(std::string id) : id_(std::move(id)) {}
  Unregister(Unregister&& o) noexcept : id_(std::exchange(o.id_, std::string())) {}
  Unregister(const Unregister&) = delete;
  Unregister& operator=(const Unregister&) = delete;
  Unregister& operator=(Unregister&&) = delete;
  ~Unregister() {
    if (!id_.empty()) Watchers().erase(id_);
  }

 private:
  std::string id_;
};

// Waits until the watcher is removed or idle for `idle`.
asio::awaitable<void> WatcherLife(Watcher& w, asio::steady_timer& wake,
                                  std::chrono::milliseconds idle) {
  for (;;) {
    if (w.removed) co_return;
    auto end = w.last_used + idle;
    if (Clock::now() >= end) co_return;
    wake.expires_at(end);
    error_code ec;
    co_await wake.async_wait(redirect_error(use_awaitable, ec));
  }
}

asio::awaitable<void> RunWatcher(std::shared_ptr<Watcher> w, std::unique_ptr<pool::AgentConn> conn,
                                 LiveService* live, [[maybe_unused]] Unregister unregister) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer wake(co_await asio::this_coro::executor);
  w->wake = &wake;
  struct ClearWake {
    Watcher& w;
    ~ClearWake() { w.wake = nullptr; }
  } clear{*w};
  auto reader = [&]() -> asio::awaitable<void> {
    for (;;) {
      auto f = co_await conn->ReadFrame();
      if (!f.ok()) {
        // (Not when the watcher was removed or expired: that cancelled the read.)
        if (!w->removed && Clock::now() < w->last_used + kWatcherIdle) {
          w->failed =
              f.error().WithCode(ErrorCode::kUnavailable).Wrap("watcher " + w->id + " ended");
        }
        co_return;
      }
      if (f->type != proto::FrameType::kWatchEvents) {
        w->failed = AgentError(*f, "watch").Wrap("watcher " + w->id + " ended");
        co_return;
      }
      auto evs = proto::ParseWatchEvents(f->payload);
      if (!evs.ok()) continue;
      auto json = co_await ConvertEvents(*live, w->spec, *evs);
      for (auto& j : json) {
        if (w->events.size() >= kMaxWatcherEvents || w->bytes + j.size() > kMaxWatcherBytes) {
          // Bounded: a watcher nobody reads stops rather than grows.
          w->failed = Fail(ErrorCode::kResourceExhausted, "watcher", w->id,
                           "more than " + std::to_string(kMaxWatcherEvents) + " events (or " +
                               std::to_string(kMaxWatcherBytes >> 20) +
                               " MiB) since the last GetWatcherEvents: it stopped; create another");
          co_return;
        }
        w->bytes += j.size();
        w->events.push_back(std::move(j));
      }
    }
  };
  auto life = [&]() -> asio::awaitable<void> { co_await WatcherLife(*w, wake, kWatcherIdle); };
  co_await (reader() || life());
  conn->Close();
  // A watch that ended (its sandbox did, or it overflowed) stays to say so
  // to the next GetWatcherEvents, for a while.
  if (w->failed && !w->removed) {
    w->events.clear();
    w->bytes = 0;
    w->last_used = std::min(w->last_used, Clock::now());
    co_await WatcherLife(*w, wake, kFailedWatcherKept);
  }
}

size_t WatchersOf(const std::string& sandbox) {
  size_t n = 0;
  for (const auto& [id, w] : Watchers()) n += w->spec.sandbox == sandbox && !w->removed;
  return n;
}

Result<std::shared_ptr<Watcher>> FindWatcher(const std::string& id, const std::string& sandbox) {
  auto it = Watchers().find(id);
  if (it == Watchers().end() || it->second->spec.sandbox != sandbox || it->second->removed) {
    return Fail(ErrorCode::kNotFound, "watcher", id, "no such watcher in this sandbox");
  }
  return it->second;
}

// --- the calls -------------------------------------------------------------------------

struct Ctx {
  beast::tcp_stream& s;
  const Request& req;
  const EnvdCall& call;
  bool keep;

  // (By value: callers pass temporaries, which GCC 12 mishandles as
  // coroutine reference parameters.)
  asio::awaitable<bool> Err(Error e) {
    const std::string code = FsConnectCode(e);
    const std::string message = e.ToString();
    co_return co_await SendConnectError(s, req.version(), keep, code, message) && keep;
  }
  asio::awaitable<bool> Reply(std::string json) {
    co_return co_await SendUnary(s, req.version(), keep, std::move(json)) && keep;
  }
  LiveService& live() { return call.live; }
  const std::string& id() { return call.sandbox.id; }
  const std::string& user() { return call.user; }

  proto::FileRequest Op(const char* op, const std::string& path) {
    proto::FileRequest fr;
    fr.op = op;
    fr.path = path;
    fr.user = call.user;
    return fr;
  }

  asio::awaitable<bool> Stat(const FsRequest& r) {
    const std::string path = FsPath(r.path, user());
    auto st = co_await AgentStat(live(), id(), path, user());
    if (!st.ok()) co_return co_await Err(st.error());
    co_return co_await Reply(EntryMessageJson(*st));
  }

  asio::awaitable<bool> ListDir(const FsRequest& r) {
    uint32_t depth = r.depth == 0 ? 1 : r.depth;
    if (depth > kMaxListDepth) {
      co_return co_await Err(Fail(ErrorCode::kInvalidArgument, "bad request", "depth",
                                  "at most " + std::to_string(kMaxListDepth)));
    }
    proto::FileRequest fr = Op("list", FsPath(r.path, user()));
    fr.depth = depth;
    auto reply = co_await AgentFileOp(live(), id(), fr);
    if (!reply.ok()) {
      // envd: a path that is not a directory is invalid_argument.
      if (reply.error().code == ErrorCode::kFailedPrecondition) {
        co_return co_await Err(Fail(ErrorCode::kInvalidArgument, "list", fr.path,
                                    "not a directory: " + reply.error().ToString()));
      }
      co_return co_await Err(reply.error());
    }
    auto entries = proto::ParseFileEntries(*reply);
    if (!entries.ok()) co_return co_await Err(entries.error().WithCode(ErrorCode::kUnavailable));
    co_return co_await Reply(EntriesMessageJson(*entries));
  }

  asio::awaitable<bool> MakeDir(const FsRequest& r) {
    proto::FileRequest fr = Op("mkdir", FsPath(r.path, user()));
    fr.mode = 0755;
    auto reply = co_await AgentFileOp(live(), id(), fr);
    if (!reply.ok()) {
      if (reply.error().code == ErrorCode::kAlreadyExists) {
        co_return co_await Err(Fail(ErrorCode::kInvalidArgument, "make dir", fr.path,
                                    "the path exists and is not a directory"));
      }
      co_return co_await Err(reply.error());
    }
    auto st = proto::ParseFileStat(*reply);
    if (!st.ok()) co_return co_await Err(st.error().WithCode(ErrorCode::kUnavailable));
    // The SDK's makeDir answers false for already_exists.
    if (st->created && !*st->created) {
      co_return co_await Err(
          Fail(ErrorCode::kAlreadyExists, "make dir", fr.path, "the directory already exists"));
    }
    co_return co_await Reply(EntryMessageJson(*st));
  }

  asio::awaitable<bool> Move(const FsRequest& r) {
    proto::FileRequest fr = Op("rename", FsPath(r.source, user()));
    fr.to = FsPath(r.destination, user());
    auto reply = co_await AgentFileOp(live(), id(), fr);
    if (!reply.ok() && reply.error().code == ErrorCode::kNotFound) {
      // As envd: the destination's parents are made (then the source may
      // still be missing: not_found).
      std::string parent = fr.to.substr(0, fr.to.rfind('/'));
      if (parent.empty()) parent = "/";
      proto::FileRequest mk = Op("mkdir", parent);
      mk.mode = 0755;
      auto made = co_await AgentFileOp(live(), id(), mk);
      if (made.ok()) reply = co_await AgentFileOp(live(), id(), fr);
    }
    if (!reply.ok()) co_return co_await Err(reply.error());
    auto st = proto::ParseFileStat(*reply);
    if (!st.ok()) co_return co_await Err(st.error().WithCode(ErrorCode::kUnavailable));
    co_return co_await Reply(EntryMessageJson(*st));
  }

  asio::awaitable<bool> Remove(const FsRequest& r) {
    proto::FileRequest fr = Op("remove", FsPath(r.path, user()));
    fr.recursive = true;  // envd: os.RemoveAll
    auto reply = co_await AgentFileOp(live(), id(), fr);
    // As os.RemoveAll: a path that is already gone is removed.
    if (!reply.ok() && reply.error().code != ErrorCode::kNotFound) {
      co_return co_await Err(reply.error());
    }
    co_return co_await Reply("{}");
  }

  asio::awaitable<bool> CreateWatcher(const FsRequest& r) {
    if (WatchersOf(id()) >= kMaxWatchersPerSandbox) {
      co_return co_await Err(Fail(ErrorCode::kResourceExhausted, "create watcher", id(),
                                  "this sandbox has " + std::to_string(kMaxWatchersPerSandbox) +
                                      " watchers: remove one first"));
    }
    auto rnd = RandomHex(8);
    if (!rnd.ok()) co_return co_await Err(rnd.error());
    auto w = std::make_shared<Watcher>();
    w->id = "w" + *rnd;
    w->spec = WatchSpec{id(), FsPath(r.path, user()), user(), r.include_entry};
    auto conn = co_await OpenWatch(live(), id(), w->spec.root, user(), r.recursive);
    if (!conn.ok()) co_return co_await Err(conn.error());
    Watchers()[w->id] = w;
    auto ex = co_await asio::this_coro::executor;
    Unregister unregister(w->id);
    auto run = RunWatcher(w, std::move(*conn), &live(), std::move(unregister));
    asio::co_spawn(ex, std::move(run), asio::detached);
    co_return co_await Reply(WatcherIdJson(w->id));
  }

  asio::awaitable<bool> GetWatcherEvents(const FsRequest& r) {
    auto w = FindWatcher(r.watcher_id, id());
    if (!w.ok()) co_return co_await Err(w.error());
    (*w)->last_used = Clock::now();
    if ((*w)->failed) co_return co_await Err(*(*w)->failed);
    std::string out = "{\"events\":[";
    for (size_t i = 0; i < (*w)->events.size(); ++i) out += (i ? "," : "") + (*w)->events[i];
    out += "]}";
    (*w)->events.clear();
    (*w)->bytes = 0;
    co_return co_await Reply(std::move(out));
  }

  asio::awaitable<bool> RemoveWatcher(const FsRequest& r) {
    auto w = FindWatcher(r.watcher_id, id());
    if (!w.ok()) co_return co_await Err(w.error());
    (*w)->removed = true;
    if ((*w)->wake) (*w)->wake->cancel();
    Watchers().erase(r.watcher_id);
    co_return co_await Reply("{}");
  }

  // The server stream: {"start":{}} once the watch is set up, then events
  // and keepalives; it ends at Connect-Timeout-Ms (deadline_exceeded), when
  // the agent's watch does, or when the client goes (then the agent's watch
  // is dropped with the connection).
  asio::awaitable<bool> WatchDir() {
    using namespace asio::experimental::awaitable_operators;
    ConnectStream out(s, req.version());
    auto msg = ParseRequestEnvelope(req.body());
    Result<FsRequest> r = msg.ok() ? ParseFsRequest(*msg) : Result<FsRequest>(msg.error());
    if (!r.ok()) co_return co_await End(out, r.error());
    auto headers =
        ParseStreamHeaders(HeaderOf("Connect-Timeout-Ms"), HeaderOf("Keepalive-Ping-Interval"));
    if (!headers.ok()) co_return co_await End(out, headers.error());
    WatchSpec spec{id(), FsPath(r->path, user()), user(), r->include_entry};
    auto conn = co_await OpenWatch(live(), id(), spec.root, user(), r->recursive);
    if (!conn.ok()) co_return co_await End(out, conn.error());
    const std::string start(kWatchStartJson);
    if (!co_await out.Send(start)) co_return false;

    // One writer: the pump queues, the writer sends (and keepalives when
    // idle, and ends the stream at the deadline).
    asio::steady_timer wake(co_await asio::this_coro::executor);
    std::deque<std::string> queue;
    std::optional<Error> ended;
    const auto deadline = headers->timeout
                              ? std::optional<Clock::time_point>(Clock::now() + *headers->timeout)
                              : std::nullopt;
    auto pump = [&]() -> asio::awaitable<void> {
      for (;;) {
        auto f = co_await (*conn)->ReadFrame();
        if (!f.ok() || f->type != proto::FrameType::kWatchEvents) {
          ended = f.ok() ? AgentError(*f, "watch")
                         : f.error().WithCode(ErrorCode::kUnavailable).Wrap("watch ended");
          wake.cancel();
          co_await Forever();
          co_return;
        }
        auto evs = proto::ParseWatchEvents(f->payload);
        if (!evs.ok()) continue;
        auto json = co_await ConvertEvents(live(), spec, *evs);
        for (auto& j : json) queue.push_back(WatchEventMessageJson(j));
        if (!json.empty()) wake.cancel();
      }
    };
    bool finished = false;
    auto writer = [&]() -> asio::awaitable<void> {
      for (;;) {
        while (!queue.empty()) {
          std::string m = std::move(queue.front());
          queue.pop_front();
          if (!co_await out.Send(m)) co_return;
        }
        if (ended) {
          finished = co_await out.End(*ended);
          co_return;
        }
        auto next = Clock::now() + headers->keepalive;
        bool at_deadline = deadline && *deadline <= next;
        if (at_deadline) next = *deadline;
        wake.expires_at(next);
        error_code ec;
        co_await wake.async_wait(redirect_error(use_awaitable, ec));
        if (ec || !queue.empty() || ended) continue;  // woken: events, or the end
        if (at_deadline) {
          const std::string code = "deadline_exceeded";
          const std::string message = "the watch reached its deadline (Connect-Timeout-Ms " +
                                      std::to_string(headers->timeout->count()) + ")";
          finished = co_await out.End(std::string_view(code), message);
          co_return;
        }
        const std::string keepalive(kWatchKeepaliveJson);
        if (!co_await out.Send(keepalive)) co_return;
      }
    };
    co_await (pump() || writer() || ClientGone(s));
    (*conn)->Close();
    co_return finished&& keep;
  }

  asio::awaitable<bool> End(ConnectStream& out, Error e) {
    const std::string code = FsConnectCode(e);
    const std::string message = e.ToString();
    bool ok = co_await out.End(std::string_view(code), message);
    co_return ok&& keep;
  }

  std::optional<std::string_view> HeaderOf(std::string_view name) {
    auto it = req.find(name);
    if (it == req.end()) return std::nullopt;
    return std::string_view(it->value().data(), it->value().size());
  }
};

}  // namespace

std::string WatcherIdJson(const std::string& id) { return "{\"watcherId\":\"" + id + "\"}"; }

Result<StreamHeaders> ParseStreamHeaders(std::optional<std::string_view> timeout_ms,
                                         std::optional<std::string_view> keepalive_s) {
  StreamHeaders h;
  if (timeout_ms) {
    auto v = ParseUint(Trim(*timeout_ms), "Connect-Timeout-Ms");
    // The Connect protocol: at most 10 digits.
    if (!v.ok() || Trim(*timeout_ms).size() > 10) {
      return Fail(
          ErrorCode::kInvalidArgument, "bad request", "Connect-Timeout-Ms",
          "expected milliseconds (up to 10 digits), got '" + std::string(*timeout_ms) + "'");
    }
    h.timeout = std::chrono::milliseconds(*v);
  }
  if (keepalive_s) {
    auto v = ParseUint(Trim(*keepalive_s), "Keepalive-Ping-Interval");
    if (!v.ok() || *v == 0 || *v > 86400) {
      return Fail(ErrorCode::kInvalidArgument, "bad request", "Keepalive-Ping-Interval",
                  "expected seconds from 1 to 86400, got '" + std::string(*keepalive_s) + "'");
    }
    h.keepalive = std::chrono::seconds(*v);
  }
  return h;
}

asio::awaitable<bool> ServeFilesystem(beast::tcp_stream& s, const Request& req,
                                      std::string_view method, const EnvdCall& call) {
  // "/filesystem.Filesystem/Stat" or "Stat".
  std::string_view m =
      method.substr(method.rfind('/') == std::string_view::npos ? 0 : method.rfind('/') + 1);
  Ctx c{s, req, call, req.keep_alive()};
  auto ct = req.find(http::field::content_type);
  std::string_view type = ct == req.end()
                              ? std::string_view()
                              : std::string_view(ct->value().data(), ct->value().size());
  if (m == "WatchDir") {
    if (!IsConnectStreamType(type)) {
      co_return co_await c.Err(Fail(ErrorCode::kInvalidArgument, "WatchDir", std::string(type),
                                    "a server stream takes Content-Type application/connect+json"));
    }
    co_return co_await c.WatchDir();
  }
  static constexpr std::string_view kUnary[] = {
      "Stat",   "ListDir",       "MakeDir",          "Move",
      "Remove", "CreateWatcher", "GetWatcherEvents", "RemoveWatcher"};
  bool known = false;
  for (auto u : kUnary) known |= u == m;
  if (!known) {
    const std::string message = "filesystem.Filesystem/" + std::string(m) + " is not a method";
    co_return co_await SendConnectError(s, req.version(), c.keep, "unimplemented", message) &&
        c.keep;
  }
  if (!IsConnectUnaryType(type)) {
    co_return co_await c.Err(Fail(ErrorCode::kInvalidArgument, std::string(m), std::string(type),
                                  "a unary call takes Content-Type application/json"));
  }
  auto r = ParseFsRequest(req.body());
  if (!r.ok()) co_return co_await c.Err(r.error());
  if (m == "Stat") co_return co_await c.Stat(*r);
  if (m == "ListDir") co_return co_await c.ListDir(*r);
  if (m == "MakeDir") co_return co_await c.MakeDir(*r);
  if (m == "Move") co_return co_await c.Move(*r);
  if (m == "Remove") co_return co_await c.Remove(*r);
  if (m == "CreateWatcher") co_return co_await c.CreateWatcher(*r);
  if (m == "GetWatcherEvents") co_return co_await c.GetWatcherEvents(*r);
  co_return co_await c.RemoveWatcher(*r);
}

size_t LiveWatcherCount() { return Watchers().size(); }

}  // namespace wb::daemon::e2b
