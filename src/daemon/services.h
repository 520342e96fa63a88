// An image's services (docs/services.md, image/services.h) on the daemon's
// side: started as kept processes of the agent in every pre-booted sandbox
// of the image (the ns driver: before any claim; the vm driver: at the
// claim, once its channels serve), listed at the claim, and the create's env
// written to /run/warmbox/envs.json for them (late binding).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <string>
#include <vector>

#include "base/error.h"
#include "daemon/live_record.h"
#include "image/services.h"
#include "image/store.h"
#include "sandbox/driver.h"

namespace wb::daemon {

inline constexpr const char* kEnvFilePath = "/run/warmbox/envs.json";
// Each service's output stays in its agent ring, this big (docs/services.md).
inline constexpr uint64_t kServiceRingBytes = 256 << 10;

// The kept process's E: argv as given (no Entrypoint), env the image's then
// the service's, user and cwd the service's or the image's.
proto::ExecRequest ServiceExec(const Image& image, const ServiceSpec& s);

// Starts every service on ep, in order; stops at the first the agent refuses
// (a service that cannot start: no such program, unknown user ...), naming
// the image and the service.
[[nodiscard]] boost::asio::awaitable<Result<void>> StartServices(
    boost::asio::any_io_executor ex, AgentEndpoint ep, const Image& image,
    const std::vector<ServiceSpec>& services);

// Waits until every service that declares a ready_port accepts a TCP
// connection there: a tunnel through the agent at ep (the port proxy's path,
// e2b::OpenTunnelOn), opened and closed at once, retried by ReadyPollPlan
// while the agent says nothing listens. Errors name the image, the service
// and the port: deadline_exceeded when it is not ready within its
// ready_timeout_s; failed_precondition when its process exited first (with
// its status); the agent's own errors; draining once stopping() says so.
[[nodiscard]] boost::asio::awaitable<Result<void>> AwaitServicesReady(
    boost::asio::any_io_executor ex, AgentEndpoint ep, const std::string& image,
    const std::vector<ServiceSpec>& services, std::function<bool()> stopping);

// The services found on ep (kept processes tagged service:NAME), with their
// exits, in start order.
[[nodiscard]] boost::asio::awaitable<Result<std::vector<ServiceState>>> ListServices(
    boost::asio::any_io_executor ex, AgentEndpoint ep);

// Writes env as envd's GET /envs answers it (e2b::EnvsJson: {"K":"V",...},
// a later key wins) to kEnvFilePath atomically (a temp file beside it,
// then a rename), mode 0644, owned by root; /run/warmbox made as needed.
[[nodiscard]] boost::asio::awaitable<Result<void>> WriteEnvFile(boost::asio::any_io_executor ex,
                                                                AgentEndpoint ep,
                                                                std::vector<std::string> env);

// The pools' hook (pool::PoolRuntime::prepare): starts the image's services
// in a sandbox just created, where its driver serves live operations before
// a claim (ns), then waits for those that declare readiness
// (AwaitServicesReady), so the sandbox goes idle ready. A bad label or a
// service that cannot start is logged (once per image) and leaves the
// sandbox as it is (Ok): plain runs of the image work. A service that does
// not become ready is the error (the pool destroys the sandbox and backs
// off).
[[nodiscard]] boost::asio::awaitable<Result<void>> PrepareServices(ImageStore& store, Sandbox& sb,
                                                                   const std::string& image,
                                                                   std::function<bool()> stopping);

// Whether the driver serves live operations before a claim, so services
// start at pre-boot (ns: the agent's own socket); otherwise at the claim.
inline bool ServesBeforeClaim(const Sandbox& sb) {
  return sb.live_endpoint().socket_path == sb.endpoint().socket_path;
}

}  // namespace wb::daemon
