// lib/notify without processes: templates, incidents with a driven clock, notification
// messages, back-off, signatures and the saved forms.
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include "core/error.h"
#include "message/time.h"
#include "notify/delivery.h"
#include "notify/incident.h"
#include "notify/notification.h"
#include "notify/sinks.h"
#include "notify/template.h"
#include "support/support.h"
#include "wire/fd_output.h"

namespace mh::notify {
namespace {

constexpr int64_t k_ms = k_ns_per_ms;
constexpr int64_t k_t0 = 1'800'000'000 * k_ns_per_second;

std::vector<std::byte> alert_frame(std::string_view source, double temperature) {
    capnp::MallocMessageBuilder builder;
    auto message = builder.initRoot<schema::Message>();
    std::array<uint8_t, 16> id{0x01, 0x9b, 0x76, 0xda, 0xa8, 0, 0x70, 1, 0x80, 2, 3, 4, 5, 6, 7, 8};
    message.setId(capnp::Data::Reader(id.data(), id.size()));
    message.setTime(k_t0);
    message.setSource(std::string(source));
    message.setGateway("gw-01");
    message.setKind("alert");
    auto fields = message.initFields(4);
    fields[0].setName("rule");
    fields[0].getValue().setText("hot");
    fields[1].setName("temperature");
    fields[1].getValue().setFloat(temperature);
    fields[2].setName("limit");
    fields[2].getValue().setInt(30);
    fields[3].setName("ok");
    fields[3].getValue().setBool(false);
    std::vector<std::byte> bytes;
    wire::append_frame(builder, bytes);
    return bytes;
}

TEST(Template, PlaceholdersWithFormats) {
    auto words = test::to_words(alert_frame("sensor-7", 31.456));
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
    auto message = reader.getRoot<schema::Message>();
    auto lookup = [&](std::string_view name) { return message_value(message, name); };
    EXPECT_EQ(Template("{source}: {temperature:.1f} °C above {limit}").render(lookup),
              "sensor-7: 31.5 °C above 30");
    EXPECT_EQ(Template("{{literal}} {gateway:>6}|{limit:.2f}|{ok}|{nothing}").render(lookup),
              "{literal}  gw-01|30.00|false|?");
    // A spec that suits some types but not this value's: the value, plain.
    EXPECT_EQ(Template("{source:.1f}").render(lookup), "sensor-7");
}

TEST(Template, BadTemplatesAreUsageErrors) {
    for (const char* bad : {"{source", "}", "{}", "{source:{}}", "{temperature:Q}"}) {
        try {
            Template t(bad);
            ADD_FAILURE() << bad << " was accepted";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ExitCode::usage) << bad;
        }
    }
}

TEST(Incidents, OncePerIncidentThenRepeatsAtMostEvery) {
    IncidentBook book({.every_ns = 100 * k_ms, .resolve_after_ns = 0, .flap_ns = 0});
    auto frame = alert_frame("s", 31);
    auto first = book.match("hot/s", k_t0, frame);
    ASSERT_TRUE(first);
    EXPECT_EQ(first->event, Event::open);
    EXPECT_FALSE(book.match("hot/s", k_t0 + 50 * k_ms, frame));
    EXPECT_FALSE(book.match("hot/s", k_t0 + 99 * k_ms, frame));
    auto repeat = book.match("hot/s", k_t0 + 100 * k_ms, frame);
    ASSERT_TRUE(repeat);
    EXPECT_EQ(repeat->event, Event::repeat);
    EXPECT_EQ(repeat->incident.count, 4u);
    EXPECT_FALSE(book.match("hot/s", k_t0 + 150 * k_ms, frame));
    // Another key is another incident.
    auto other = book.match("hot/t", k_t0 + 150 * k_ms, frame);
    ASSERT_TRUE(other);
    EXPECT_EQ(other->event, Event::open);
    std::vector<Told> told;
    book.tick(k_t0 + 10'000 * k_ms, told);
    EXPECT_TRUE(told.empty()) << "no --resolve-after: incidents stay open";
    EXPECT_FALSE(book.next_deadline());
}

TEST(Incidents, ResolveAfterAbsence) {
    IncidentBook book({.every_ns = 0, .resolve_after_ns = 200 * k_ms, .flap_ns = 0});
    auto frame = alert_frame("s", 31);
    book.match("k", k_t0, frame);
    book.match("k", k_t0 + 150 * k_ms, frame);
    EXPECT_EQ(book.next_deadline(), k_t0 + 350 * k_ms);
    std::vector<Told> told;
    book.tick(k_t0 + 349 * k_ms, told);
    EXPECT_TRUE(told.empty());
    book.tick(k_t0 + 350 * k_ms, told);
    ASSERT_EQ(told.size(), 1u);
    EXPECT_EQ(told[0].event, Event::resolved);
    EXPECT_EQ(told[0].incident.count, 2u);
    EXPECT_TRUE(book.incidents().empty());
    // After the resolution the next match opens a new incident.
    auto again = book.match("k", k_t0 + 400 * k_ms, frame);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->event, Event::open);
}

TEST(Incidents, ResolveWhenAndFlapHoldDown) {
    IncidentBook book({.every_ns = 0, .resolve_after_ns = 0, .flap_ns = 100 * k_ms});
    auto frame = alert_frame("s", 31);
    const std::string key = std::string("hot") + k_key_separator + "s";
    const std::vector<std::optional<std::string>> any_rule_of_s = {std::nullopt, "s"};
    EXPECT_TRUE(book.clear(any_rule_of_s, k_t0).empty()) << "nothing open, nothing to resolve";
    ASSERT_TRUE(book.match(key, k_t0, frame));
    ASSERT_TRUE(book.match(std::string("hot") + k_key_separator + "t", k_t0, frame));
    EXPECT_TRUE(book.clear({std::nullopt, std::nullopt}, k_t0).empty())
        << "an empty pattern resolves nothing";
    // Flapping: cleared, back within the hold-down, cleared again: nothing is told.
    EXPECT_TRUE(book.clear(any_rule_of_s, k_t0 + 10 * k_ms).empty());
    EXPECT_FALSE(book.match(key, k_t0 + 50 * k_ms, frame));
    EXPECT_TRUE(book.clear({"hot", "s"}, k_t0 + 60 * k_ms).empty());
    std::vector<Told> told;
    book.tick(k_t0 + 159 * k_ms, told);
    EXPECT_TRUE(told.empty());
    book.tick(k_t0 + 160 * k_ms, told);
    ASSERT_EQ(told.size(), 1u);
    EXPECT_EQ(told[0].event, Event::resolved);
    EXPECT_EQ(told[0].key, key);
    EXPECT_EQ(told[0].incident.count, 2u);
    EXPECT_EQ(book.incidents().size(), 1u) << "the incident of t is still open";
}

TEST(Incidents, SavedFormRoundTrips) {
    Incident incident{k_t0, k_t0 + 1, k_t0 + 2, 0, 42, 3, alert_frame("s", 1)};
    auto back = Incident::deserialize(incident.serialize());
    ASSERT_TRUE(back);
    EXPECT_EQ(back->opened_ns, incident.opened_ns);
    EXPECT_EQ(back->last_seen_ns, incident.last_seen_ns);
    EXPECT_EQ(back->last_notified_ns, incident.last_notified_ns);
    EXPECT_EQ(back->count, 42u);
    EXPECT_EQ(back->notifications, 3u);
    EXPECT_EQ(back->last_frame, incident.last_frame);
    EXPECT_FALSE(Incident::deserialize(std::span<const std::byte>()));
}

TEST(Notification, AMessageAndItsJson) {
    Template text("{source}: {temperature:.1f} ({state} #{count})");
    NotificationBuilder builder(text, {});
    Told told{std::string("hot") + k_key_separator + "s", Event::open,
              Incident{k_t0, k_t0, k_t0, 0, 1, 1, alert_frame("s", 31.25)}};
    std::vector<std::byte> bytes;
    builder.build(told, k_t0 + 5, bytes);
    auto words = test::to_words(bytes);
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
    auto message = reader.getRoot<schema::Message>();
    EXPECT_EQ(std::string(message.getKind().cStr()), "notification");
    EXPECT_EQ(std::string(message.getSource().cStr()), "s");
    EXPECT_EQ(std::string(message.getGateway().cStr()), "gw-01");
    EXPECT_EQ(field_text(message, "state"), "open");
    EXPECT_EQ(field_text(message, "incident"), "hot/s");
    EXPECT_EQ(field_text(message, "rule"), "hot");
    EXPECT_EQ(field_text(message, "count"), "1");
    EXPECT_EQ(field_text(message, "text"), "s: 31.2 (open #1)");
    std::string json;
    JsonEncoder().encode(message, json);
    EXPECT_NE(json.find(R"("message":{"id":"019b76da-a800-7001-8002-030405060708")"),
              std::string::npos)
        << json;
    EXPECT_NE(json.find(R"("temperature":31.25)"), std::string::npos) << json;

    // The same incident and event number, the same id; another number, another id.
    EXPECT_EQ(notification_id("hot/s", k_t0, 1), notification_id("hot/s", k_t0, 1));
    EXPECT_NE(notification_id("hot/s", k_t0, 1), notification_id("hot/s", k_t0, 2));
    EXPECT_NE(notification_id("hot/s", k_t0, 1), notification_id("hot/t", k_t0, 1));
    auto id = notification_id("hot/s", k_t0, 1);
    EXPECT_EQ(id[6] >> 4, 7) << "UUID version 7";
    EXPECT_EQ(id[8] >> 6, 2) << "RFC 4122 variant";
}

TEST(Delivery, BackoffDoublesWithJitterUpToTheCap) {
    RetryPolicy policy{.retry_for_ns = 0,
                       .max_attempts = 0,
                       .backoff_ns = 100 * k_ms,
                       .backoff_max_ns = 1000 * k_ms};
    EXPECT_EQ(backoff_delay_ns(policy, 1, 0.0), 50 * k_ms);
    EXPECT_EQ(backoff_delay_ns(policy, 1, 0.999999), 99'999'950);
    EXPECT_EQ(backoff_delay_ns(policy, 2, 0.0), 100 * k_ms);
    EXPECT_EQ(backoff_delay_ns(policy, 3, 0.5), 300 * k_ms);
    EXPECT_EQ(backoff_delay_ns(policy, 10, 0.0), 500 * k_ms);
    EXPECT_EQ(backoff_delay_ns(policy, 1000, 0.0), 500 * k_ms);
}

TEST(Delivery, HmacSha256MatchesRfc4231) {
    // RFC 4231, test case 2.
    EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Delivery, DeadLetterCarriesTheReason) {
    test::TempFile out;
    DeadLetter dead_letter(std::make_unique<wire::FdFrameWriter>(out.fd()), {});
    auto words = test::to_words(alert_frame("s", 31));
    dead_letter.notification(wire::Frame{words.data(), words.size()}, "webhook http://x",
                             "HTTP 500", 4);
    std::string bytes = out.content();
    std::vector<std::byte> raw(reinterpret_cast<const std::byte*>(bytes.data()),
                               reinterpret_cast<const std::byte*>(bytes.data()) + bytes.size());
    auto back = test::to_words(raw);
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(back.data(), back.size()));
    auto message = reader.getRoot<schema::Message>();
    EXPECT_EQ(field_text(message, "reason"), "HTTP 500");
    EXPECT_EQ(field_text(message, "sink"), "webhook http://x");
    EXPECT_EQ(field_text(message, "attempts"), "4");
    EXPECT_EQ(field_text(message, "temperature"), "31.0");
}

}  // namespace
}  // namespace mh::notify

namespace mh::notify {
namespace {

// A notification frame as the engine stores it.
std::vector<std::byte> notification_frame() {
    Template text("{source}");
    NotificationBuilder builder(text, {});
    std::vector<std::byte> bytes;
    builder.build(
        Told{"hot", Event::open, Incident{k_t0, k_t0, k_t0, 0, 1, 1, alert_frame("s", 31)}}, k_t0,
        bytes);
    return bytes;
}

size_t pending_rows(State& state) {
    store::Txn txn(state.env(), store::Txn::Kind::read);
    return txn.stat(state.pending).ms_entries;
}

struct WorkerFixture {
    State state{""};  // a temporary directory
    test::TempFile dead;
    DeadLetter dead_letter{std::make_unique<wire::FdFrameWriter>(dead.fd()), {}};
    metrics::Registry registry;
    DeliveryCounters counters{registry};
    Log log{"notify_test", LogLevel::error};
    StopFlag stop{false};
    Failure failure;

    std::unique_ptr<Worker> worker(const std::string& command, uint32_t max_attempts) {
        RetryPolicy policy{.retry_for_ns = 0,
                           .max_attempts = max_attempts,
                           .backoff_ns = k_ms,
                           .backoff_max_ns = 2 * k_ms};
        return std::make_unique<Worker>(make_exec(command, 10'000 * k_ms, &stop), state, policy,
                                        dead_letter, log, counters, stop, wire::FrameLimits{},
                                        failure);
    }
    void store(Worker& worker, uint64_t sequence, const std::vector<std::byte>& frame) {
        store::Txn txn(state.env(), store::Txn::Kind::write);
        store_pending(txn, state, worker.id(), sequence, frame);
        txn.commit();
    }
};

TEST(Delivery, AWorkerDeliversAndForgetsTheRow) {
    WorkerFixture f;
    auto worker = f.worker("cat > /dev/null", 0);
    auto frame = notification_frame();
    f.store(*worker, 1, frame);
    worker->start();
    worker->push(1, frame);
    EXPECT_EQ(worker->finish(), 0u);
    EXPECT_EQ(f.counters.delivered.value(), 1u);
    EXPECT_EQ(f.counters.failed_attempts.value(), 0u);
    EXPECT_EQ(pending_rows(f.state), 0u);
    EXPECT_EQ(f.dead.content(), "");
}

TEST(Delivery, AWorkerRetriesWithinItsBudgetThenDeadLetters) {
    WorkerFixture f;
    auto worker = f.worker("exit 7", 3);
    auto frame = notification_frame();
    f.store(*worker, 1, frame);
    worker->start();
    worker->push(1, frame);
    EXPECT_EQ(worker->finish(), 0u);
    EXPECT_EQ(f.counters.failed_attempts.value(), 3u);
    EXPECT_EQ(f.counters.dead_letters.value(), 1u);
    EXPECT_EQ(pending_rows(f.state), 0u);
    std::string bytes = f.dead.content();
    std::vector<std::byte> raw(reinterpret_cast<const std::byte*>(bytes.data()),
                               reinterpret_cast<const std::byte*>(bytes.data()) + bytes.size());
    auto words = test::to_words(raw);
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
    auto message = reader.getRoot<schema::Message>();
    EXPECT_EQ(field_text(message, "reason"), "exit status 7");
    EXPECT_EQ(field_text(message, "attempts"), "3");
    EXPECT_EQ(field_text(message, "sink"), "exec exit 7");
}

TEST(Delivery, PendingRowsOutliveTheWorker) {
    WorkerFixture f;
    auto frame = notification_frame();
    {
        auto first = f.worker("true", 0);
        f.store(*first, 5, frame);
        f.store(*first, 6, frame);
        // Never started: as if the process ended before delivering.
    }
    auto second = f.worker("true", 0);
    EXPECT_EQ(second->load(), 2u);
    auto other = f.worker("false", 0);
    EXPECT_EQ(other->load(), 0u) << "another sink's queue is its own";
    second->start();
    EXPECT_EQ(second->finish(), 0u);
    EXPECT_EQ(f.counters.delivered.value(), 2u);
    EXPECT_EQ(pending_rows(f.state), 0u);
}

}  // namespace
}  // namespace mh::notify
