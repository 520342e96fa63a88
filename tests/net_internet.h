// A small private "internet" for the network tests and benchmarks
// (docs/network.md, "Testing"): nothing they send leaves namespaces made
// here. Start() moves the calling process into a new network namespace (D,
// "the host": the daemon's side; call it while the process has one thread)
// and makes a second one (I, "the internet") holding servers on the
// documentation ranges 198.51.100.0/24 and 203.0.113.0/24, a DNS server for
// *.test names, and stand-ins for the metadata address and private ranges.
// A veth pair links D (192.0.2.2, .3) and I (192.0.2.1); D's only route
// leads there.
#pragma once

#include <memory>
#include <string>

#include "base/child.h"
#include "base/error.h"
#include "base/fd.h"

namespace wb::testing {

class TestInternet {
 public:
  // On I: port 80 of every address answers any request with
  // "hello from <the address reached>"; port 8080 answers `GET /bytes/N`
  // with N bytes (a bulk download). DNS on 198.51.100.53: allowed.test
  // (198.51.100.10), neighbour.test (.11), denied.test and www.wild.test
  // (203.0.113.10), private.test (10.1.2.3).
  [[nodiscard]] static Result<std::unique_ptr<TestInternet>> Start(const std::string& dir);
  ~TestInternet();  // kills the servers (the namespaces go with them and D's process)
  TestInternet(const TestInternet&) = delete;
  TestInternet& operator=(const TestInternet&) = delete;
  pid_t pid() const { return server_.pid(); }

 private:
  TestInternet() = default;
  ChildProcess server_, dns_;
  UniqueFd server_in_;
};

// One internet for a whole test suite: Start() in SetUpTestSuite (a temp dir
// named after prefix holds its files; the process moves into D), Stop() in
// TearDownTestSuite (the servers killed, the dir removed).
class SuiteInternet {
 public:
  [[nodiscard]] static Result<void> Start(const std::string& prefix);
  static void Stop();
  static bool up() { return net_ != nullptr; }

 private:
  static std::string* dir_;
  static TestInternet* net_;
};

}  // namespace wb::testing
