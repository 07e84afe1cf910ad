// ragg-micro: the aggregation kernels against the machine's memory
// bandwidth, in one binary and one run.
//
// Measured, at 64 MiB per array (RAGG_MICRO_MIB overrides), on 1 thread
// (the caller) and on 2 (the engine's pool, each thread on its half):
//   copy, triad     STREAM's loops; bytes 2x and 3x the array
//   fused k         ragg's fused weighted sum of k inputs; bytes (k+1)x
//   openblas k      the same sum as a saxpby + saxpy chain; bytes (k+1)x
//   adam            the server's Adam step (reads w, m, v, g; writes w, m,
//                   v); bytes 7x
// and a summary line per k, and one for Adam:
//   sum k=K: fused=A GB/s openblas=B GB/s fused/triad=R fused/openblas=S
//   adam: GBps=X adam/triad=Y
// and the gradient codecs (src/compress), on the caller's thread:
//   codec_encode X     C(g) alone (error feedback off); bytes: the fp32 input
//   codec_encode_ef X  with error feedback (g + e, C, e = g - D(c))
//   codec_decode X     D(c) into an fp32 array; bytes: the fp32 output
// summarised as
//   codec: name=X encode_GBps=A decode_GBps=B encode/copy=C encode_ef_GBps=D
// where copy is STREAM copy on one thread counted the same way, in GB/s of
// fp32 input copied (half STREAM's figure, which counts read and write);
// and secure aggregation's expansions (src/privacy/secagg.c), on the
// caller's thread, bytes the 32-bit words produced:
//   secagg_mask        x += PRG(seed): one mask (XChaCha20 keystream)
//   secagg_encode      the fixed-point encoding with stochastic rounding
//   secagg_sum4        the agent's integer sum of 4 inputs; bytes 5x, as
//                      the fused sum counts them
// each also with the scalar loops (_scalar; the vector kernels where the
// CPU has AVX2), summarised as
//   secagg: mask_GBps=A encode_GBps=B copy_GBps=C mask/copy=D encode/copy=E
//           mask_scalar_GBps=F encode_scalar_GBps=G sum4_GBps=H
//           sum4_scalar_GBps=I sum4/fused4=J
// (one line; fused4 the fused float sum of 4 on one thread)
// and differential privacy's pieces at the agent (src/privacy/dp.c), on the
// caller's thread:
//   dp_noise_add       out += sigma N(0, 1) (ChaCha20 stream, ziggurat);
//                      bytes: the fp32 output
//   dp_noise_set       out = sigma N(0, 1), the noise drawn ahead of a round
//   dp_chacha20        the XChaCha20 keystream alone (4 bytes per deviate)
//   dp_norm2           the clip's norm of a chunk; bytes: the fp32 input
// summarised as
//   dp: noise_GBps=A noise_set_GBps=B chacha20_GBps=C norm_GBps=D copy_GBps=E
//       noise_set/copy=F noise_set/chacha20=G
// Rates are the best of the repetitions, as STREAM reports them; GB = 1e9 B.
//
// Bytes are what the operation must move at least, not what the hardware
// moves: triad's ordinary stores also read the destination first, while the
// fused kernel's streaming stores do not, so fused/triad can exceed 1.

#include <benchmark/benchmark.h>

#include <cblas.h>
#include <poll.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "compress/codec.h"
#include "engine/engine.h"
#include "stream.h"

extern "C" {
#include <sodium.h>

#include "privacy/dp.h"
#include "privacy/secagg.h"
}

namespace
{

constexpr int kMaxK = 8;
constexpr int kKs[] = { 2, 4, 8 };

struct Arrays {
	size_t n = 0; // floats per array
	size_t bytes = 0;
	float *in[kMaxK] = {};
	float *out = nullptr;
	float w[kMaxK] = {};
};

ragg__engine *g_engine; // 2 threads: the pool the 2-thread runs use
const ragg__kernels *g_fused, *g_blas;
Arrays g_a;
// Step 10 of Adam, lr = 1e-3, PyTorch's betas and eps.
ragg__adam_coef g_adam = { 0.9f, 0.1f, 0.999f, 0.001f, 1e-8f, 1.535e-3f, 10.02f, 0.0f, 1.0f };

// ---- codecs ----

const char *const kCodecs[] = { "none",      "fp16",       "bf16",   "onebit",
	                        "topk:0.01", "randk:0.01", "qsgd:15" };

struct Codec {
	ragg__codec_spec spec, ef;
	unsigned char *enc = nullptr;
	size_t cap = 0;
};

Codec g_codec[sizeof(kCodecs) / sizeof(kCodecs[0])];
float *g_grad, *g_resid; // a gradient-like input, and a residual

enum class CodecOp { encode, encode_ef, decode };

void register_codec(size_t c, CodecOp op)
{
	static const char *const what[] = { "codec_encode/", "codec_encode_ef/", "codec_decode/" };
	benchmark::RegisterBenchmark(
	    (std::string(what[(int)op]) + kCodecs[c]).c_str(),
	    [=](benchmark::State &st) {
		    Codec &k = g_codec[c];
		    uint64_t seed = 1;
		    for (auto _ : st) {
			    long rc = 0;
			    switch (op) {
			    case CodecOp::encode:
				    rc = ragg__codec_encode(&k.spec, g_grad, g_a.n, k.enc, k.cap,
				                            nullptr, seed++);
				    break;
			    case CodecOp::encode_ef:
				    rc = ragg__codec_encode(&k.ef, g_grad, g_a.n, k.enc, k.cap,
				                            g_resid, seed++);
				    break;
			    case CodecOp::decode:
				    rc = ragg__codec_decode(&k.spec, k.enc, k.cap, g_a.out, g_a.n,
				                            1);
				    break;
			    }
			    if (rc < 0) {
				    st.SkipWithError("codec call failed");
				    break;
			    }
			    benchmark::ClobberMemory();
		    }
		    st.SetBytesProcessed((int64_t)((double)g_a.bytes * (double)st.iterations()));
	    })
	    ->UseRealTime()
	    ->Unit(benchmark::kMillisecond);
}

// ---- secure aggregation's mask expansion ----

enum class SaOp { mask, encode, sum };

void register_secagg(SaOp op, bool scalar)
{
	static const char *const names[2][3] = {
		{ "secagg_mask", "secagg_encode", "secagg_sum4" },
		{ "secagg_mask_scalar", "secagg_encode_scalar", "secagg_sum4_scalar" },
	};
	benchmark::RegisterBenchmark(
	    names[scalar][(int)op],
	    [=](benchmark::State &st) {
		    static const uint8_t seed[RAGG_SA_SEED_BYTES] = { 1, 2, 3 };
		    uint32_t *x = reinterpret_cast<uint32_t *>(g_a.out);
		    const uint32_t *in[4];
		    for (int j = 0; j < 4; j++)
			    in[j] = reinterpret_cast<const uint32_t *>(g_a.in[j]);
		    ragg__sa_pos pos = { 1, 0, 1 };
		    ragg__sa_force_scalar(scalar);
		    for (auto _ : st) {
			    if (op == SaOp::encode)
				    ragg__sa_encode(x, g_grad, g_a.n, 3.0, 64.0, 0x1p20, seed, &pos);
			    else if (op == SaOp::mask)
				    ragg__sa_mask(x, g_a.n, seed, &pos, 1);
			    else
				    ragg__sa_sum(x, in, 4, g_a.n);
			    pos.round++;
			    benchmark::ClobberMemory();
		    }
		    ragg__sa_force_scalar(false);
		    // The sum counts what it moves, like the fused sum: (k + 1)x.
		    double bytes = (double)g_a.bytes * (op == SaOp::sum ? 5 : 1);
		    st.SetBytesProcessed((int64_t)(bytes * (double)st.iterations()));
	    })
	    ->UseRealTime()
	    ->Unit(benchmark::kMillisecond);
}

// ---- differential privacy's noise and norm ----

enum class DpOp { add, set, chacha20, norm2 };

void register_dp(DpOp op)
{
	static const char *names[] = { "dp_noise_add", "dp_noise_set", "dp_chacha20", "dp_norm2" };
	benchmark::RegisterBenchmark(
	    names[(int)op],
	    [=](benchmark::State &st) {
		    static ragg__dp_noise key = { { 7, 1, 2 } };
		    static const uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES] = { 3 };
		    uint64_t round = 1;
		    double sink = 0;
		    for (auto _ : st) {
			    switch (op) {
			    case DpOp::add:
				    ragg__dp_noise_add(&key, 0, 0, round, g_a.out, g_a.n, 1e-3);
				    break;
			    case DpOp::set:
				    ragg__dp_noise_set(&key, 0, 0, round, g_a.out, g_a.n, 1e-3);
				    break;
			    case DpOp::chacha20:
				    crypto_stream_xchacha20(reinterpret_cast<unsigned char *>(g_a.out),
				                            g_a.bytes, nonce, key.key);
				    break;
			    case DpOp::norm2:
				    sink += g_fused->norm2(g_grad, g_a.n);
				    break;
			    }
			    round++;
			    benchmark::DoNotOptimize(sink);
			    benchmark::ClobberMemory();
		    }
		    st.SetBytesProcessed((int64_t)((double)g_a.bytes * (double)st.iterations()));
	    })
	    ->UseRealTime()
	    ->Unit(benchmark::kMillisecond);
}

// ---- running a piece of work on each of the pool's threads ----

enum class Op { copy, triad, fused, blas, adam };

struct Part {
	ragg__job job;
	Op op;
	int k;
	size_t begin, end;
};

extern "C" void part_run(ragg__job *job)
{
	Part *p = reinterpret_cast<Part *>(job);
	size_t b = p->begin, len = p->end - p->begin;
	const float *in[kMaxK];
	for (int j = 0; j < p->k; j++)
		in[j] = g_a.in[j] + b;
	switch (p->op) {
	case Op::copy:
		ragg_micro_copy(g_a.out + b, g_a.in[0] + b, len);
		break;
	case Op::triad:
		ragg_micro_triad(g_a.out + b, g_a.in[0] + b, g_a.in[1] + b, 3.0f, len);
		break;
	case Op::fused:
		g_fused->sum_weighted(g_a.out + b, in, g_a.w, p->k, len);
		break;
	case Op::blas:
		g_blas->sum_weighted(g_a.out + b, in, g_a.w, p->k, len);
		break;
	case Op::adam:
		// w = out, m = in[4], v = in[5] (>= 0), g = in[6]: every value
		// stays finite and normal over any number of runs.
		g_fused->adam(g_a.out + b, g_a.in[4] + b, g_a.in[5] + b, g_a.in[6] + b, &g_adam,
		              len);
		break;
	}
}

// Split [0, n) in `threads` parts, thread t taking the part it first
// touched; wait on the wake fd until all are reaped.
void run(Op op, int k, int threads)
{
	Part parts[2];
	for (int t = 0; t < threads; t++) {
		size_t per = g_a.n / (size_t)threads;
		parts[t].job = ragg__job{};
		parts[t].job.fn = part_run;
		parts[t].job.thread_hint = t;
		parts[t].op = op;
		parts[t].k = k;
		parts[t].begin = per * (size_t)t;
		parts[t].end = t == threads - 1 ? g_a.n : per * (size_t)(t + 1);
	}
	if (threads == 1) {
		part_run(&parts[0].job);
		return;
	}
	for (int t = 0; t < threads; t++)
		ragg__engine_submit(g_engine, &parts[t].job);
	for (int left = threads; left > 0;) {
		ragg__job *j = ragg__engine_reap(g_engine);
		if (!j) {
			pollfd p = { ragg__engine_wake_fd(g_engine), POLLIN, 0 };
			poll(&p, 1, -1);
			continue;
		}
		for (; j; j = j->next)
			left--;
	}
}

double bytes_of(Op op, int k)
{
	switch (op) {
	case Op::copy:
		return 2.0 * (double)g_a.bytes;
	case Op::triad:
		return 3.0 * (double)g_a.bytes;
	case Op::adam:
		return 7.0 * (double)g_a.bytes;
	default:
		return (k + 1.0) * (double)g_a.bytes;
	}
}

void register_one(const std::string &name, Op op, int k, int threads)
{
	benchmark::RegisterBenchmark(
	    name.c_str(),
	    [=](benchmark::State &st) {
		    for (auto _ : st) {
			    run(op, k, threads);
			    benchmark::ClobberMemory();
		    }
		    st.SetBytesProcessed((int64_t)(bytes_of(op, k) * (double)st.iterations()));
	    })
	    ->UseRealTime()
	    ->Unit(benchmark::kMillisecond);
}

std::string key(const std::string &what, int k, int threads)
{
	return what + (k ? "/k:" + std::to_string(k) : "") + "/threads:" + std::to_string(threads);
}

// Keeps the best rate per benchmark while the console reporter prints.
class Collector : public benchmark::ConsoleReporter
{
      public:
	std::map<std::string, double> best; // GB/s

	// --benchmark_color only reaches the reporter the library makes
	// itself: colour when printing to a terminal.
	Collector() : ConsoleReporter(isatty(1) ? OO_ColorTabular : OO_Tabular)
	{
	}

	void ReportRuns(const std::vector<Run> &runs) override
	{
		benchmark::ConsoleReporter::ReportRuns(runs);
		for (const Run &r : runs) {
			if (r.run_type != Run::RT_Iteration || r.error_occurred)
				continue;
			auto it = r.counters.find("bytes_per_second");
			if (it == r.counters.end())
				continue;
			double &b = best[r.run_name.function_name];
			b = std::max(b, it->second.value / 1e9);
		}
	}
};

double get(const Collector &c, const std::string &k)
{
	auto it = c.best.find(k);
	return it == c.best.end() ? 0.0 : it->second;
}

void summary(const Collector &c, int threads)
{
	double copy = get(c, key("copy", 0, threads)), triad = get(c, key("triad", 0, threads));
	if (triad == 0.0)
		return;
	std::printf("threads=%d: copy=%.1f GB/s triad=%.1f GB/s\n", threads, copy, triad);
	for (int k : kKs) {
		double f = get(c, key("fused", k, threads)),
		       b = get(c, key("openblas", k, threads));
		if (f == 0.0 || b == 0.0)
			continue;
		// The single-thread lines keep the exact form scripts look for.
		std::printf("sum k=%d%s: fused=%.1f GB/s openblas=%.1f GB/s fused/triad=%.2f "
		            "fused/openblas=%.2f\n",
		            k, threads == 1 ? "" : " (2 threads)", f, b, f / triad, f / b);
	}
	double a = get(c, key("adam", 0, threads));
	if (a != 0.0)
		std::printf("adam%s: GBps=%.1f adam/triad=%.2f\n",
		            threads == 1 ? "" : " (2 threads)", a, a / triad);
}

void codec_summary(const Collector &c)
{
	double copy = get(c, key("copy", 0, 1)) / 2;
	if (copy == 0.0)
		return;
	std::printf("codec copy: copy_GBps=%.2f (1 thread, fp32 input copied per second)\n", copy);
	for (const char *name : kCodecs) {
		double e = get(c, std::string("codec_encode/") + name),
		       d = get(c, std::string("codec_decode/") + name),
		       f = get(c, std::string("codec_encode_ef/") + name);
		if (e == 0.0 || d == 0.0)
			continue;
		std::printf("codec: name=%s encode_GBps=%.2f decode_GBps=%.2f encode/copy=%.2f "
		            "encode_ef_GBps=%.2f\n",
		            name, e, d, e / copy, f);
	}
}

void secagg_summary(const Collector &c)
{
	double copy = get(c, key("copy", 0, 1)) / 2, m = get(c, "secagg_mask"),
	       e = get(c, "secagg_encode"), ms = get(c, "secagg_mask_scalar"),
	       es = get(c, "secagg_encode_scalar"), s = get(c, "secagg_sum4"),
	       ss = get(c, "secagg_sum4_scalar"), f = get(c, key("fused", 4, 1));
	if (copy == 0.0 || m == 0.0 || e == 0.0)
		return;
	std::printf("secagg: mask_GBps=%.2f encode_GBps=%.2f copy_GBps=%.2f mask/copy=%.2f "
	            "encode/copy=%.2f mask_scalar_GBps=%.2f encode_scalar_GBps=%.2f "
	            "sum4_GBps=%.2f sum4_scalar_GBps=%.2f sum4/fused4=%.2f\n",
	            m, e, copy, m / copy, e / copy, ms, es, s, ss, f > 0 ? s / f : 0.0);
}

void dp_summary(const Collector &c)
{
	double copy = get(c, key("copy", 0, 1)) / 2, a = get(c, "dp_noise_add"),
	       s = get(c, "dp_noise_set"), k = get(c, "dp_chacha20"), nm = get(c, "dp_norm2");
	if (copy == 0.0 || s == 0.0 || k == 0.0)
		return;
	std::printf("dp: noise_GBps=%.2f noise_set_GBps=%.2f chacha20_GBps=%.2f norm_GBps=%.2f "
	            "copy_GBps=%.2f noise_set/copy=%.2f noise_set/chacha20=%.2f\n",
	            a, s, k, nm, copy, s / copy, s / k);
}

} // namespace

int main(int argc, char **argv)
{
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;

	// The BLAS chain runs on the caller's thread (or one pool thread per
	// half), like the fused kernel: no BLAS threads of its own.
	setenv("OPENBLAS_NUM_THREADS", "1", 0);
	openblas_set_num_threads(1);

	// libsodium picks its vector ChaCha20 here, as ragg_init does.
	if (sodium_init() < 0) {
		std::fprintf(stderr, "ragg-micro: sodium_init failed\n");
		return 1;
	}
	const char *mib_env = std::getenv("RAGG_MICRO_MIB");
	size_t mib = mib_env && std::atoi(mib_env) > 0 ? (size_t)std::atoi(mib_env) : 64;
	const char *kn = std::getenv("RAGG_KERNELS");
	g_fused = ragg__kernels_get(kn && std::strcmp(kn, "openblas") != 0 ? kn : "auto");
	g_blas = ragg__kernels_get("openblas");
	if (!g_fused || !g_blas) {
		std::fprintf(stderr, "ragg-micro: kernels \"%s\" not available on this CPU\n", kn);
		return 1;
	}

	ragg__engine_conf conf = {};
	conf.threads = 2;
	conf.cpus = std::getenv("RAGG_CPUS");
	int rc = ragg__engine_start(&conf, &g_engine);
	if (rc) {
		std::fprintf(stderr, "ragg-micro: engine start failed (%d)\n", rc);
		return 1;
	}
	char desc[512];
	ragg__engine_describe(g_engine, desc, sizeof(desc));
	std::printf("engine: %s\nfused kernels: %s, arrays: %zu MiB, OPENBLAS_NUM_THREADS=1\n",
	            desc, g_fused->name, mib);

	// Each half first touched by the pool thread that sums it.
	g_a.bytes = mib << 20;
	g_a.n = g_a.bytes / sizeof(float);
	for (int j = 0; j < kMaxK; j++) {
		g_a.in[j] =
		    static_cast<float *>(ragg__engine_alloc(g_engine, g_a.bytes, g_a.bytes / 2));
		if (!g_a.in[j])
			return 1;
		for (size_t i = 0; i < g_a.n; i++)
			g_a.in[j][i] = (float)((i + (size_t)j) % 17) * 0.25f;
		g_a.w[j] = 1.0f + (float)j;
	}
	g_a.out = static_cast<float *>(ragg__engine_alloc(g_engine, g_a.bytes, g_a.bytes / 2));
	if (!g_a.out)
		return 1;

	// A gradient-like input: magnitudes spread over a few binades, signs
	// mixed, no two neighbours alike.
	g_grad = static_cast<float *>(ragg__engine_alloc(g_engine, g_a.bytes, g_a.bytes));
	g_resid = static_cast<float *>(ragg__engine_alloc(g_engine, g_a.bytes, g_a.bytes));
	if (!g_grad || !g_resid)
		return 1;
	for (size_t i = 0; i < g_a.n; i++) {
		uint32_t h = (uint32_t)i * 2654435761u;
		g_grad[i] = ((float)(h >> 8) / 8388608.0f - 1.0f) * (float)(1u << (h & 7)) * 1e-3f;
		g_resid[i] = 0;
	}
	for (size_t c = 0; c < sizeof(kCodecs) / sizeof(kCodecs[0]); c++) {
		Codec &k = g_codec[c];
		if (ragg__codec_parse(kCodecs[c], &k.spec))
			return 1;
		k.ef = k.spec;
		k.spec.error_feedback = 0;
		k.cap = ragg__codec_max_encoded_size(&k.spec, g_a.n);
		k.enc = static_cast<unsigned char *>(ragg__engine_alloc(g_engine, k.cap, k.cap));
		if (!k.enc ||
		    ragg__codec_encode(&k.spec, g_grad, g_a.n, k.enc, k.cap, nullptr, 1) < 0)
			return 1;
		register_codec(c, CodecOp::encode);
		if (k.ef.error_feedback)
			register_codec(c, CodecOp::encode_ef);
		register_codec(c, CodecOp::decode);
	}

	// libsodium picks its fastest ChaCha20 in sodium_init(), as the
	// library's contexts do.
	if (sodium_init() < 0)
		return 1;
	for (bool scalar : { false, true }) {
		register_secagg(SaOp::mask, scalar);
		register_secagg(SaOp::encode, scalar);
		register_secagg(SaOp::sum, scalar);
	}
	for (DpOp op : { DpOp::add, DpOp::set, DpOp::chacha20, DpOp::norm2 })
		register_dp(op);
	for (int threads = 1; threads <= 2; threads++) {
		register_one(key("copy", 0, threads), Op::copy, 0, threads);
		register_one(key("triad", 0, threads), Op::triad, 0, threads);
		for (int k : kKs) {
			register_one(key("fused", k, threads), Op::fused, k, threads);
			register_one(key("openblas", k, threads), Op::blas, k, threads);
		}
		register_one(key("adam", 0, threads), Op::adam, 0, threads);
	}

	Collector c;
	benchmark::RunSpecifiedBenchmarks(&c);
	std::printf("\n");
	summary(c, 1);
	summary(c, 2);
	codec_summary(c);
	secagg_summary(c);
	dp_summary(c);

	benchmark::Shutdown();
	for (int j = 0; j < kMaxK; j++)
		ragg__engine_free(g_engine, g_a.in[j], g_a.bytes);
	ragg__engine_free(g_engine, g_a.out, g_a.bytes);
	for (Codec &k : g_codec)
		ragg__engine_free(g_engine, k.enc, k.cap);
	ragg__engine_free(g_engine, g_grad, g_a.bytes);
	ragg__engine_free(g_engine, g_resid, g_a.bytes);
	ragg__engine_stop(g_engine);
	return 0;
}
