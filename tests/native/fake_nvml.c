/*
 * fake_nvml.c: a test double of libnvidia-ml.so.1 (NVML) for machines without an
 * NVIDIA GPU. It exports the NVML functions gpubench calls (through the real pynvml
 * package) and answers them from a script given in environment variables, read when
 * the library is first initialised (nvmlInit*):
 *
 *   FAKE_NVML_INIT_FAIL=1|<code>   nvmlInit fails (1 means NVML_ERROR_DRIVER_NOT_LOADED)
 *   FAKE_NVML_GPUS=N               number of GPUs (default 1, at most 16)
 *   FAKE_NVML_EPOCH_S=<s>          CLOCK_MONOTONIC seconds that schedules count from
 *                                  (default: the moment of the first nvmlInit)
 *   FAKE_NVML_POWER_W=<schedule>   board power: "150", or stepped "100@0,300@2.5"
 *                                  (watts@seconds since the epoch)
 *   FAKE_NVML_ENERGY_PERIOD_MS=<ms> the energy counter moves only every <ms> (default 0:
 *                                  continuous). The counter is the exact integral of the
 *                                  power schedule over real (monotonic) time, in mJ.
 *   FAKE_NVML_NO_ENERGY=1          the energy counter is NVML_ERROR_NOT_SUPPORTED
 *   FAKE_NVML_UNSUPPORTED=a,b,...  queries answering NVML_ERROR_NOT_SUPPORTED, from:
 *                                  power, power_field, energy, utilization, clocks,
 *                                  max_clocks, temperature, clock_events (answers
 *                                  FUNCTION_NOT_FOUND, as an old driver would),
 *                                  throttle_reasons, memory, power_limit, bus_width,
 *                                  cuda_version, processes (both process lists),
 *                                  graphics_processes, processes_v3 (the _v3 process
 *                                  lists answer FUNCTION_NOT_FOUND, as a driver without
 *                                  them would), persistence, app_clocks (current and
 *                                  default application clocks), locked_clocks (set and
 *                                  reset), supported_clocks (the supported clock lists)
 *   FAKE_NVML_GPU_UTIL_PCT, FAKE_NVML_MEM_UTIL_PCT, FAKE_NVML_SM_CLOCK_MHZ,
 *   FAKE_NVML_MEM_CLOCK_MHZ, FAKE_NVML_MAX_SM_CLOCK_MHZ, FAKE_NVML_MAX_MEM_CLOCK_MHZ,
 *   FAKE_NVML_TEMP_C, FAKE_NVML_CLOCK_REASONS (a bitmask, e.g. 0x4; schedules allowed),
 *   FAKE_NVML_MEM_TOTAL_BYTES, FAKE_NVML_MEM_USED_BYTES, FAKE_NVML_POWER_LIMIT_W,
 *   FAKE_NVML_BUS_WIDTH_BITS       values (schedules allowed for all of them)
 *   FAKE_NVML_GPM_DRAM_BW_PCT=<schedule> GPM is supported and reports this DRAM
 *                                  bandwidth utilisation (default: GPM unsupported)
 *   FAKE_NVML_NAME, FAKE_NVML_DRIVER_VERSION, FAKE_NVML_CUDA_VERSION (e.g. 12040)
 *   FAKE_NVML_PROCESSES=pid:bytes,...  compute processes on the GPU and their GPU memory
 *                                  ("1234:1048576,5678:2097152"; pid "self" is the process
 *                                  that loaded the double; bytes "-" or left out: not
 *                                  available, as on Windows WDDM). Default: none
 *   FAKE_NVML_GRAPHICS_PROCESSES=pid:bytes,...  graphics processes, the same way
 *   FAKE_NVML_PERSISTENCE=0|1      persistence mode (default 1, on)
 *   FAKE_NVML_APP_CLOCK_MHZ, FAKE_NVML_APP_MEM_CLOCK_MHZ  application clocks, graphics
 *                                  and memory (default: the default application clocks)
 *   FAKE_NVML_DEFAULT_APP_CLOCK_MHZ, FAKE_NVML_DEFAULT_APP_MEM_CLOCK_MHZ  default
 *                                  application clocks (default 1755 and 2619)
 *   FAKE_NVML_FAIL_AFTER_S=<s>     from <s> after the epoch, device queries fail with
 *   FAKE_NVML_FAIL_CODE=<code>     <code> (default 15, NVML_ERROR_GPU_IS_LOST) ...
 *   FAKE_NVML_FAIL_FOR_S=<s>       ... for <s> seconds (default: for ever)
 *   FAKE_NVML_CALL_LOG=<path>      appends "<function> <gpu index>" per device call
 * Clock and power policy (the setters gpubench's --lock-clocks / --power-limit call):
 *   FAKE_NVML_STATE_FILE=<path>    the locked clocks and power limit set, per GPU, kept in
 *                                  this file so that every process loading the double sees
 *                                  them (lines "<gpu> <limit mW|-1> <min MHz|-1> <max MHz|-1>");
 *                                  without it the setters answer NOT_SUPPORTED. The power
 *                                  limit getters answer the limit set, and the SM/graphics
 *                                  clock answers the locked max clock while one is locked
 *   FAKE_NVML_POWER_LIMIT_MIN_W, FAKE_NVML_POWER_LIMIT_MAX_W  the limit's constraints
 *                                  (default 200 and 700); FAKE_NVML_POWER_LIMIT_W is also
 *                                  the default limit
 *   FAKE_NVML_SUPPORTED_CLOCKS=a,b,...  supported graphics clocks (MHz, default the max SM
 *                                  clock down to 210 in steps of 15)
 *   FAKE_NVML_NO_PERMISSION=1      the setters answer NVML_ERROR_NO_PERMISSION
 *   the fingerprint's (VBIOS, PCIe link, ECC, memory repairs, MIG): see the fingerprint
 *                                  block at the end of this file
 *
 * The per-device variables (power, energy support, the values, FAKE_NVML_UNSUPPORTED,
 * FAKE_NVML_GPM_DRAM_BW_PCT, the process lists, persistence, application clocks) can be
 * given per GPU as <NAME>_<index>
 * (FAKE_NVML_POWER_W_1=250 overrides FAKE_NVML_POWER_W for GPU 1).
 * Build: gcc -shared -fPIC -O2 -Wl,-soname,libnvidia-ml.so.1 -o libnvidia-ml.so.1 \
 *        fake_nvml.c -lpthread
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* Return codes (nvml.h). */
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NO_PERMISSION = 4,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_FUNCTION_NOT_FOUND = 13,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

#define MAX_GPUS 16
#define MAX_STEPS 64
#define MAX_PROCS 32
#define NVML_FI_DEV_POWER_AVERAGE 185
#define NVML_FI_DEV_POWER_INSTANT 186
#define NVML_GPM_METRIC_DRAM_BW_UTIL 10
#define NVML_VALUE_TYPE_UNSIGNED_INT 1

typedef struct {
    int n;
    double value[MAX_STEPS];
    double start_s[MAX_STEPS]; /* seconds since the epoch, ascending */
} schedule_t;

/* nvmlProcessInfo_v2_t, which pynvml passes to both the _v2 and the _v3 process-list
 * calls (c_nvmlProcessInfo_v3_t = c_nvmlProcessInfo_v2_t): 24 bytes, natural alignment. */
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;
#define NVML_VALUE_NOT_AVAILABLE_ULL 0xFFFFFFFFFFFFFFFFULL
#define NO_INSTANCE 0xFFFFFFFFu /* the instance ids of a process on a GPU without MIG */

typedef struct {
    int n;
    unsigned int pid[MAX_PROCS];
    unsigned long long used_bytes[MAX_PROCS];
} proc_list_t;

typedef struct fake_device {
    int index;
    schedule_t power_w, gpu_util, mem_util, sm_clock, mem_clock, max_sm_clock, max_mem_clock,
        temp_c, reasons, mem_total, mem_used, power_limit_w, bus_width, gpm_dram_pct,
        app_clock, app_mem_clock, default_app_clock, default_app_mem_clock;
    int gpm_supported;
    int persistence;
    proc_list_t compute, graphics;
    char unsupported[512]; /* ",name,name," */
} fake_device_t;

typedef struct {
    unsigned int magic;
    int device;
    double t_s;
} fake_gpm_sample_t;

/* Layouts as in nvml.h / pynvml. */
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef union {
    double dVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    long long sllVal;
    int siVal;
    unsigned short usVal;
} nvmlValue_t;
typedef struct {
    unsigned int fieldId;
    unsigned int scopeId;
    long long timestamp;
    long long latencyUsec;
    unsigned int valueType;
    unsigned int nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;
typedef struct { const char *shortName, *longName, *unit; } nvmlGpmMetricInfo_t;
typedef struct {
    unsigned int metricId;
    unsigned int nvmlReturn;
    double value;
    nvmlGpmMetricInfo_t metricInfo;
} nvmlGpmMetric_t;
typedef struct {
    unsigned int version;
    unsigned int numMetrics;
    fake_gpm_sample_t *sample1;
    fake_gpm_sample_t *sample2;
    nvmlGpmMetric_t metrics[]; /* numMetrics entries (the caller's array is larger) */
} nvmlGpmMetricsGet_t;
typedef struct { unsigned int version, isSupportedDevice; } nvmlGpmSupport_t;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_refcount = 0;
static int g_configured = 0;
static int g_gpus = 1;
static double g_epoch_s = 0;
static double g_energy_period_s = 0;
static double g_energy_offset_mj = 123456789.0;
static double g_fail_after_s = -1, g_fail_for_s = -1;
static int g_fail_code = NVML_ERROR_GPU_IS_LOST;
static char g_name[96] = "NVIDIA Fake H100";
static char g_driver[80] = "550.54.15";
static int g_cuda_version = 12040;
static FILE *g_log = NULL;
static fake_device_t g_dev[MAX_GPUS];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *env_for(const char *name, int index) {
    char key[128];
    snprintf(key, sizeof key, "%s_%d", name, index);
    const char *v = getenv(key);
    return v ? v : getenv(name);
}

/* "150" or "100@0,300@2.5"; values may be hex ("0x4"). */
static void parse_schedule(schedule_t *s, const char *text, double fallback) {
    s->n = 0;
    if (text && *text) {
        const char *p = text;
        while (*p && s->n < MAX_STEPS) {
            char *end;
            double v = strtod(p, &end);
            if (end == p) break;
            double t = 0;
            p = end;
            if (*p == '@') {
                t = strtod(p + 1, &end);
                p = end;
            }
            s->value[s->n] = v;
            s->start_s[s->n] = t;
            s->n++;
            if (*p == ',') p++;
        }
    }
    if (s->n == 0) {
        s->n = 1;
        s->value[0] = fallback;
        s->start_s[0] = 0;
    }
}

static double at(const schedule_t *s, double t) {
    double v = s->value[0];
    for (int i = 0; i < s->n; i++)
        if (s->start_s[i] <= t) v = s->value[i];
    return v;
}

/* The integral of a schedule from 0 to t (value x seconds). */
static double integral(const schedule_t *s, double t) {
    if (t <= 0) return 0;
    double total = 0;
    for (int i = 0; i < s->n; i++) {
        double a = i == 0 ? 0 : s->start_s[i];
        double b = i + 1 < s->n ? s->start_s[i + 1] : INFINITY;
        if (a < 0) a = 0;
        if (b > t) b = t;
        if (b > a) total += s->value[i] * (b - a);
    }
    return total;
}

static double env_double(const char *name, double fallback) {
    const char *v = getenv(name);
    return v && *v ? strtod(v, NULL) : fallback;
}

/* "1234:1048576,self:-,5678" -> pids and used bytes ("-" or missing: not available). */
static void parse_processes(proc_list_t *list, const char *text) {
    list->n = 0;
    const char *p = text;
    while (p && *p && list->n < MAX_PROCS) {
        char *end;
        unsigned long pid;
        if (strncmp(p, "self", 4) == 0) {
            pid = (unsigned long)getpid();
            end = (char *)p + 4;
        } else {
            pid = strtoul(p, &end, 10);
            if (end == p) break;
        }
        p = end;
        unsigned long long used = NVML_VALUE_NOT_AVAILABLE_ULL;
        if (*p == ':') {
            p++;
            if (*p == '-') {
                p++;
            } else {
                used = strtoull(p, &end, 10);
                p = end;
            }
        }
        list->pid[list->n] = (unsigned int)pid;
        list->used_bytes[list->n] = used;
        list->n++;
        if (*p == ',') p++;
        else break;
    }
}

static void copy_env(char *dst, size_t size, const char *name) {
    const char *v = getenv(name);
    if (v) snprintf(dst, size, "%s", v);
}

static void configure(void) {
    g_gpus = (int)env_double("FAKE_NVML_GPUS", 1);
    if (g_gpus < 0) g_gpus = 0;
    if (g_gpus > MAX_GPUS) g_gpus = MAX_GPUS;
    g_epoch_s = env_double("FAKE_NVML_EPOCH_S", now_s());
    g_energy_period_s = env_double("FAKE_NVML_ENERGY_PERIOD_MS", 0) / 1000.0;
    g_fail_after_s = env_double("FAKE_NVML_FAIL_AFTER_S", -1);
    g_fail_for_s = env_double("FAKE_NVML_FAIL_FOR_S", -1);
    g_fail_code = (int)env_double("FAKE_NVML_FAIL_CODE", NVML_ERROR_GPU_IS_LOST);
    g_cuda_version = (int)env_double("FAKE_NVML_CUDA_VERSION", 12040);
    copy_env(g_name, sizeof g_name, "FAKE_NVML_NAME");
    copy_env(g_driver, sizeof g_driver, "FAKE_NVML_DRIVER_VERSION");
    const char *log = getenv("FAKE_NVML_CALL_LOG");
    if (log && *log && !g_log) g_log = fopen(log, "a");
    for (int i = 0; i < g_gpus; i++) {
        fake_device_t *d = &g_dev[i];
        d->index = i;
        const char *u = env_for("FAKE_NVML_UNSUPPORTED", i);
        const char *no_energy = env_for("FAKE_NVML_NO_ENERGY", i);
        snprintf(d->unsupported, sizeof d->unsupported, ",%s,%s", u ? u : "",
                 no_energy && atoi(no_energy) ? "energy," : "");
        parse_schedule(&d->power_w, env_for("FAKE_NVML_POWER_W", i), 100);
        parse_schedule(&d->gpu_util, env_for("FAKE_NVML_GPU_UTIL_PCT", i), 97);
        parse_schedule(&d->mem_util, env_for("FAKE_NVML_MEM_UTIL_PCT", i), 40);
        parse_schedule(&d->sm_clock, env_for("FAKE_NVML_SM_CLOCK_MHZ", i), 1980);
        parse_schedule(&d->mem_clock, env_for("FAKE_NVML_MEM_CLOCK_MHZ", i), 2619);
        parse_schedule(&d->max_sm_clock, env_for("FAKE_NVML_MAX_SM_CLOCK_MHZ", i), 1980);
        parse_schedule(&d->max_mem_clock, env_for("FAKE_NVML_MAX_MEM_CLOCK_MHZ", i), 2619);
        parse_schedule(&d->temp_c, env_for("FAKE_NVML_TEMP_C", i), 55);
        parse_schedule(&d->reasons, env_for("FAKE_NVML_CLOCK_REASONS", i), 0);
        parse_schedule(&d->mem_total, env_for("FAKE_NVML_MEM_TOTAL_BYTES", i), 85899345920.0);
        parse_schedule(&d->mem_used, env_for("FAKE_NVML_MEM_USED_BYTES", i), 1073741824.0);
        parse_schedule(&d->power_limit_w, env_for("FAKE_NVML_POWER_LIMIT_W", i), 700);
        parse_schedule(&d->bus_width, env_for("FAKE_NVML_BUS_WIDTH_BITS", i), 5120);
        parse_schedule(&d->default_app_clock, env_for("FAKE_NVML_DEFAULT_APP_CLOCK_MHZ", i), 1755);
        parse_schedule(&d->default_app_mem_clock,
                       env_for("FAKE_NVML_DEFAULT_APP_MEM_CLOCK_MHZ", i), 2619);
        parse_schedule(&d->app_clock, env_for("FAKE_NVML_APP_CLOCK_MHZ", i),
                       d->default_app_clock.value[0]);
        parse_schedule(&d->app_mem_clock, env_for("FAKE_NVML_APP_MEM_CLOCK_MHZ", i),
                       d->default_app_mem_clock.value[0]);
        const char *persistence = env_for("FAKE_NVML_PERSISTENCE", i);
        d->persistence = persistence && *persistence ? atoi(persistence) != 0 : 1;
        parse_processes(&d->compute, env_for("FAKE_NVML_PROCESSES", i));
        parse_processes(&d->graphics, env_for("FAKE_NVML_GRAPHICS_PROCESSES", i));
        const char *gpm = env_for("FAKE_NVML_GPM_DRAM_BW_PCT", i);
        d->gpm_supported = gpm && *gpm;
        parse_schedule(&d->gpm_dram_pct, gpm, 0);
    }
    g_configured = 1;
}

static int unsupported(const fake_device_t *d, const char *what) {
    char key[64];
    snprintf(key, sizeof key, ",%s,", what);
    return strstr(d->unsupported, key) != NULL;
}

static double elapsed_s(void) { return now_s() - g_epoch_s; }

static void log_call(const char *fn, int index) {
    if (!g_log) return;
    pthread_mutex_lock(&g_lock);
    fprintf(g_log, "%s %d\n", fn, index);
    fflush(g_log);
    pthread_mutex_unlock(&g_lock);
}

/* Common checks of every device query: initialised, a valid handle, not failing. */
static int check_device(const char *fn, fake_device_t *d) {
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    if (d < g_dev || d >= g_dev + g_gpus) return NVML_ERROR_INVALID_ARGUMENT;
    log_call(fn, d->index);
    if (g_fail_after_s >= 0) {
        double t = elapsed_s();
        if (t >= g_fail_after_s && (g_fail_for_s < 0 || t < g_fail_after_s + g_fail_for_s))
            return g_fail_code;
    }
    return NVML_SUCCESS;
}

#define DEVICE_CALL(fn, d, what, out)                 \
    do {                                              \
        int rc_ = check_device(fn, d);                \
        if (rc_ != NVML_SUCCESS) return rc_;          \
        if (!(out)) return NVML_ERROR_INVALID_ARGUMENT; \
        if ((what) && unsupported(d, what)) return NVML_ERROR_NOT_SUPPORTED; \
    } while (0)

/* ---- init, shutdown, errors ------------------------------------------------------ */

static int init(void) {
    pthread_mutex_lock(&g_lock);
    const char *fail = getenv("FAKE_NVML_INIT_FAIL");
    if (fail && *fail && strcmp(fail, "0") != 0) {
        int code = atoi(fail);
        pthread_mutex_unlock(&g_lock);
        return code <= 1 ? NVML_ERROR_DRIVER_NOT_LOADED : code;
    }
    if (!g_configured) configure();
    g_refcount++;
    pthread_mutex_unlock(&g_lock);
    return NVML_SUCCESS;
}

EXPORT int nvmlInit_v2(void) { return init(); }
EXPORT int nvmlInit(void) { return init(); }
EXPORT int nvmlInitWithFlags(unsigned int flags) { (void)flags; return init(); }

EXPORT int nvmlShutdown(void) {
    pthread_mutex_lock(&g_lock);
    int rc = g_refcount > 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
    if (g_refcount > 0) g_refcount--;
    pthread_mutex_unlock(&g_lock);
    return rc;
}

EXPORT const char *nvmlErrorString(int result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

/* ---- system ---------------------------------------------------------------------- */

static int copy_string(char *dst, unsigned int length, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, strlen(src) + 1);
    return NVML_SUCCESS;
}

EXPORT int nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    return copy_string(version, length, g_driver);
}

EXPORT int nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    return copy_string(version, length, "12.550.54.15");
}

EXPORT int nvmlSystemGetCudaDriverVersion(int *version) {
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    if (!version) return NVML_ERROR_INVALID_ARGUMENT;
    if (g_gpus > 0 && unsupported(&g_dev[0], "cuda_version")) return NVML_ERROR_NOT_SUPPORTED;
    *version = g_cuda_version;
    return NVML_SUCCESS;
}

EXPORT int nvmlSystemGetCudaDriverVersion_v2(int *version) {
    return nvmlSystemGetCudaDriverVersion(version);
}

/* ---- devices --------------------------------------------------------------------- */

EXPORT int nvmlDeviceGetCount_v2(unsigned int *count) {
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = (unsigned int)g_gpus;
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

EXPORT int nvmlDeviceGetHandleByIndex_v2(unsigned int index, fake_device_t **device) {
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    if (!device || index >= (unsigned int)g_gpus) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &g_dev[index];
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetHandleByIndex(unsigned int index, fake_device_t **device) {
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

static void uuid_of(int index, char *out, size_t size) {
    snprintf(out, size, "GPU-fa4e0000-0000-4000-8000-%012d", index);
}

EXPORT int nvmlDeviceGetHandleByUUID(const char *uuid, fake_device_t **device) {
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    if (!uuid || !device) return NVML_ERROR_INVALID_ARGUMENT;
    for (int i = 0; i < g_gpus; i++) {
        char mine[96];
        uuid_of(i, mine, sizeof mine);
        if (strcmp(mine, uuid) == 0) {
            *device = &g_dev[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

EXPORT int nvmlDeviceGetIndex(fake_device_t *d, unsigned int *index) {
    DEVICE_CALL("nvmlDeviceGetIndex", d, NULL, index);
    *index = (unsigned int)d->index;
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetName(fake_device_t *d, char *name, unsigned int length) {
    DEVICE_CALL("nvmlDeviceGetName", d, NULL, name);
    return copy_string(name, length, g_name);
}

EXPORT int nvmlDeviceGetUUID(fake_device_t *d, char *uuid, unsigned int length) {
    DEVICE_CALL("nvmlDeviceGetUUID", d, NULL, uuid);
    char mine[96];
    uuid_of(d->index, mine, sizeof mine);
    return copy_string(uuid, length, mine);
}

EXPORT int nvmlDeviceGetMemoryInfo(fake_device_t *d, nvmlMemory_t *memory) {
    DEVICE_CALL("nvmlDeviceGetMemoryInfo", d, "memory", memory);
    double t = elapsed_s();
    memory->total = (unsigned long long)at(&d->mem_total, t);
    memory->used = (unsigned long long)at(&d->mem_used, t);
    memory->free = memory->total > memory->used ? memory->total - memory->used : 0;
    return NVML_SUCCESS;
}

static unsigned int power_mw(fake_device_t *d) {
    return (unsigned int)llround(at(&d->power_w, elapsed_s()) * 1000.0);
}

EXPORT int nvmlDeviceGetPowerUsage(fake_device_t *d, unsigned int *power) {
    DEVICE_CALL("nvmlDeviceGetPowerUsage", d, "power", power);
    *power = power_mw(d);
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetTotalEnergyConsumption(fake_device_t *d, unsigned long long *energy) {
    DEVICE_CALL("nvmlDeviceGetTotalEnergyConsumption", d, "energy", energy);
    double t = elapsed_s();
    if (g_energy_period_s > 0) t = floor(t / g_energy_period_s) * g_energy_period_s;
    /* watts x seconds = joules; the counter is in millijoules */
    *energy = (unsigned long long)llround(g_energy_offset_mj + integral(&d->power_w, t) * 1000.0);
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetFieldValues(fake_device_t *d, int count, nvmlFieldValue_t *values) {
    DEVICE_CALL("nvmlDeviceGetFieldValues", d, NULL, values);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (int i = 0; i < count; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
        v->latencyUsec = 0;
        if ((v->fieldId == NVML_FI_DEV_POWER_INSTANT || v->fieldId == NVML_FI_DEV_POWER_AVERAGE)
            && !unsupported(d, "power_field") && !unsupported(d, "power")) {
            v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
            v->value.uiVal = power_mw(d);
            v->nvmlReturn = NVML_SUCCESS;
        } else {
            v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        }
    }
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetUtilizationRates(fake_device_t *d, nvmlUtilization_t *util) {
    DEVICE_CALL("nvmlDeviceGetUtilizationRates", d, "utilization", util);
    double t = elapsed_s();
    util->gpu = (unsigned int)llround(at(&d->gpu_util, t));
    util->memory = (unsigned int)llround(at(&d->mem_util, t));
    return NVML_SUCCESS;
}

/* The clock and power policy's state (its section at the end of this file). */
static int policy_limit_mw(const fake_device_t *d, unsigned int *mw);
static int policy_locked_max(const fake_device_t *d, unsigned int *mhz);

/* Clock types: 0 graphics, 1 SM, 2 memory, 3 video. */
EXPORT int nvmlDeviceGetClockInfo(fake_device_t *d, int type, unsigned int *clock) {
    DEVICE_CALL("nvmlDeviceGetClockInfo", d, "clocks", clock);
    double t = elapsed_s();
    if (type == 0 || type == 1) *clock = (unsigned int)llround(at(&d->sm_clock, t));
    else if (type == 2) *clock = (unsigned int)llround(at(&d->mem_clock, t));
    else return NVML_ERROR_NOT_SUPPORTED;
    if (type != 2) policy_locked_max(d, clock);
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetMaxClockInfo(fake_device_t *d, int type, unsigned int *clock) {
    DEVICE_CALL("nvmlDeviceGetMaxClockInfo", d, "max_clocks", clock);
    double t = elapsed_s();
    if (type == 0 || type == 1) *clock = (unsigned int)llround(at(&d->max_sm_clock, t));
    else if (type == 2) *clock = (unsigned int)llround(at(&d->max_mem_clock, t));
    else return NVML_ERROR_NOT_SUPPORTED;
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetTemperature(fake_device_t *d, int sensor, unsigned int *temp) {
    DEVICE_CALL("nvmlDeviceGetTemperature", d, "temperature", temp);
    if (sensor != 0) return NVML_ERROR_INVALID_ARGUMENT;
    *temp = (unsigned int)llround(at(&d->temp_c, elapsed_s()));
    return NVML_SUCCESS;
}

static unsigned long long reasons_now(fake_device_t *d) {
    return (unsigned long long)llround(at(&d->reasons, elapsed_s()));
}

EXPORT int nvmlDeviceGetCurrentClocksEventReasons(fake_device_t *d, unsigned long long *r) {
    DEVICE_CALL("nvmlDeviceGetCurrentClocksEventReasons", d, NULL, r);
    if (unsupported(d, "clock_events")) return NVML_ERROR_FUNCTION_NOT_FOUND;
    *r = reasons_now(d);
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetCurrentClocksThrottleReasons(fake_device_t *d, unsigned long long *r) {
    DEVICE_CALL("nvmlDeviceGetCurrentClocksThrottleReasons", d, "throttle_reasons", r);
    *r = reasons_now(d);
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetPowerManagementLimit(fake_device_t *d, unsigned int *limit) {
    DEVICE_CALL("nvmlDeviceGetPowerManagementLimit", d, "power_limit", limit);
    *limit = (unsigned int)llround(at(&d->power_limit_w, elapsed_s()) * 1000.0);
    policy_limit_mw(d, limit);
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetEnforcedPowerLimit(fake_device_t *d, unsigned int *limit) {
    DEVICE_CALL("nvmlDeviceGetEnforcedPowerLimit", d, "power_limit", limit);
    *limit = (unsigned int)llround(at(&d->power_limit_w, elapsed_s()) * 1000.0);
    policy_limit_mw(d, limit);
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetMemoryBusWidth(fake_device_t *d, unsigned int *width) {
    DEVICE_CALL("nvmlDeviceGetMemoryBusWidth", d, "bus_width", width);
    *width = (unsigned int)llround(at(&d->bus_width, elapsed_s()));
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetCudaComputeCapability(fake_device_t *d, int *major, int *minor) {
    DEVICE_CALL("nvmlDeviceGetCudaComputeCapability", d, NULL, major);
    if (!minor) return NVML_ERROR_INVALID_ARGUMENT;
    *major = 9;
    *minor = 0;
    return NVML_SUCCESS;
}

/* ---- pre-run state: processes, persistence mode, application clocks ------------- */

/* NVML's two-call protocol: with too small a buffer (or none) the count needed is
 * returned with NVML_ERROR_INSUFFICIENT_SIZE; no processes at all is success. */
static int list_processes(const proc_list_t *list, unsigned int *count, nvmlProcessInfo_t *infos) {
    unsigned int n = (unsigned int)list->n;
    if (!infos || *count < n) {
        *count = n;
        return n ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
    }
    for (unsigned int i = 0; i < n; i++) {
        infos[i].pid = list->pid[i];
        infos[i].usedGpuMemory = list->used_bytes[i];
        infos[i].gpuInstanceId = NO_INSTANCE;
        infos[i].computeInstanceId = NO_INSTANCE;
    }
    *count = n;
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetComputeRunningProcesses_v3(fake_device_t *d, unsigned int *count,
                                                   nvmlProcessInfo_t *infos) {
    DEVICE_CALL("nvmlDeviceGetComputeRunningProcesses_v3", d, "processes", count);
    if (unsupported(d, "processes_v3")) return NVML_ERROR_FUNCTION_NOT_FOUND;
    return list_processes(&d->compute, count, infos);
}

EXPORT int nvmlDeviceGetComputeRunningProcesses_v2(fake_device_t *d, unsigned int *count,
                                                   nvmlProcessInfo_t *infos) {
    DEVICE_CALL("nvmlDeviceGetComputeRunningProcesses_v2", d, "processes", count);
    return list_processes(&d->compute, count, infos);
}

static int graphics_processes(const char *fn, int v3, fake_device_t *d, unsigned int *count,
                              nvmlProcessInfo_t *infos) {
    DEVICE_CALL(fn, d, "processes", count);
    if (v3 && unsupported(d, "processes_v3")) return NVML_ERROR_FUNCTION_NOT_FOUND;
    if (unsupported(d, "graphics_processes")) return NVML_ERROR_NOT_SUPPORTED;
    return list_processes(&d->graphics, count, infos);
}

EXPORT int nvmlDeviceGetGraphicsRunningProcesses_v3(fake_device_t *d, unsigned int *count,
                                                    nvmlProcessInfo_t *infos) {
    return graphics_processes("nvmlDeviceGetGraphicsRunningProcesses_v3", 1, d, count, infos);
}

EXPORT int nvmlDeviceGetGraphicsRunningProcesses_v2(fake_device_t *d, unsigned int *count,
                                                    nvmlProcessInfo_t *infos) {
    return graphics_processes("nvmlDeviceGetGraphicsRunningProcesses_v2", 0, d, count, infos);
}

EXPORT int nvmlDeviceGetPersistenceMode(fake_device_t *d, unsigned int *mode) {
    DEVICE_CALL("nvmlDeviceGetPersistenceMode", d, "persistence", mode);
    *mode = (unsigned int)d->persistence; /* nvmlEnableState_t: 0 disabled, 1 enabled */
    return NVML_SUCCESS;
}

/* Application clocks by clock type: 0 graphics, 1 SM (as graphics here), 2 memory. */
static int app_clock(const schedule_t *graphics, const schedule_t *memory, int type,
                     unsigned int *clock) {
    double t = elapsed_s();
    if (type == 0 || type == 1) *clock = (unsigned int)llround(at(graphics, t));
    else if (type == 2) *clock = (unsigned int)llround(at(memory, t));
    else return NVML_ERROR_NOT_SUPPORTED;
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetApplicationsClock(fake_device_t *d, int type, unsigned int *clock) {
    DEVICE_CALL("nvmlDeviceGetApplicationsClock", d, "app_clocks", clock);
    return app_clock(&d->app_clock, &d->app_mem_clock, type, clock);
}

EXPORT int nvmlDeviceGetDefaultApplicationsClock(fake_device_t *d, int type, unsigned int *clock) {
    DEVICE_CALL("nvmlDeviceGetDefaultApplicationsClock", d, "app_clocks", clock);
    return app_clock(&d->default_app_clock, &d->default_app_mem_clock, type, clock);
}

/* ---- GPM (GPU performance monitoring, Hopper and newer) ------------------------- */

#define GPM_MAGIC 0x67706d31u

EXPORT int nvmlGpmQueryDeviceSupport(fake_device_t *d, nvmlGpmSupport_t *support) {
    DEVICE_CALL("nvmlGpmQueryDeviceSupport", d, NULL, support);
    if (support->version != 1) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    support->isSupportedDevice = d->gpm_supported && !unsupported(d, "gpm");
    return NVML_SUCCESS;
}

EXPORT int nvmlGpmSampleAlloc(fake_gpm_sample_t **sample) {
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    if (!sample) return NVML_ERROR_INVALID_ARGUMENT;
    fake_gpm_sample_t *s = calloc(1, sizeof *s);
    if (!s) return NVML_ERROR_UNKNOWN;
    s->magic = GPM_MAGIC;
    s->device = -1;
    *sample = s;
    return NVML_SUCCESS;
}

EXPORT int nvmlGpmSampleFree(fake_gpm_sample_t *sample) {
    if (!sample || sample->magic != GPM_MAGIC) return NVML_ERROR_INVALID_ARGUMENT;
    sample->magic = 0;
    free(sample);
    return NVML_SUCCESS;
}

EXPORT int nvmlGpmSampleGet(fake_device_t *d, fake_gpm_sample_t *sample) {
    DEVICE_CALL("nvmlGpmSampleGet", d, NULL, sample);
    if (sample->magic != GPM_MAGIC) return NVML_ERROR_INVALID_ARGUMENT;
    if (!d->gpm_supported || unsupported(d, "gpm")) return NVML_ERROR_NOT_SUPPORTED;
    sample->device = d->index;
    sample->t_s = elapsed_s();
    return NVML_SUCCESS;
}

EXPORT int nvmlGpmMetricsGet(nvmlGpmMetricsGet_t *request) {
    if (g_refcount <= 0) return NVML_ERROR_UNINITIALIZED;
    if (!request || !request->sample1 || !request->sample2) return NVML_ERROR_INVALID_ARGUMENT;
    if (request->version != 1) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    fake_gpm_sample_t *a = request->sample1, *b = request->sample2;
    if (a->magic != GPM_MAGIC || b->magic != GPM_MAGIC || a->device < 0
        || a->device != b->device || b->t_s <= a->t_s)
        return NVML_ERROR_INVALID_ARGUMENT;
    const schedule_t *pct = &g_dev[a->device].gpm_dram_pct;
    for (unsigned int i = 0; i < request->numMetrics; i++) {
        nvmlGpmMetric_t *m = &request->metrics[i];
        if (m->metricId == NVML_GPM_METRIC_DRAM_BW_UTIL) {
            /* the average over the two samples' interval */
            m->value = (integral(pct, b->t_s) - integral(pct, a->t_s)) / (b->t_s - a->t_s);
            m->nvmlReturn = NVML_SUCCESS;
            m->metricInfo.shortName = "dram_bw_util";
            m->metricInfo.longName = "DRAM bandwidth utilization";
            m->metricInfo.unit = "%";
        } else {
            m->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        }
    }
    return NVML_SUCCESS;
}

/* ==== clock and power policy (--lock-clocks, --power-limit) ========================
 * Setters and getters whose state lives in FAKE_NVML_STATE_FILE, so the process that
 * sets (gpubench's launcher), the worker that measures and a test that checks after all
 * see the same GPU. */

typedef struct { long long limit_mw, min_mhz, max_mhz; } policy_state_t;

static const char *state_file(void) {
    const char *path = getenv("FAKE_NVML_STATE_FILE");
    return path && *path ? path : NULL;
}

/* All GPUs' state from the file (-1: not set). */
static void read_state(policy_state_t *state) {
    for (int i = 0; i < MAX_GPUS; i++) state[i].limit_mw = state[i].min_mhz = state[i].max_mhz = -1;
    const char *path = state_file();
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) return;
    int gpu;
    long long limit, lo, hi;
    while (fscanf(f, "%d %lld %lld %lld", &gpu, &limit, &lo, &hi) == 4) {
        if (gpu < 0 || gpu >= MAX_GPUS) continue;
        state[gpu].limit_mw = limit;
        state[gpu].min_mhz = lo;
        state[gpu].max_mhz = hi;
    }
    fclose(f);
}

static int write_state(const policy_state_t *state) {
    const char *path = state_file();
    if (!path) return NVML_ERROR_NOT_SUPPORTED;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return NVML_ERROR_UNKNOWN;
    for (int i = 0; i < MAX_GPUS; i++)
        if (state[i].limit_mw >= 0 || state[i].max_mhz >= 0)
            fprintf(f, "%d %lld %lld %lld\n", i, state[i].limit_mw, state[i].min_mhz,
                    state[i].max_mhz);
    fclose(f);
    return rename(tmp, path) == 0 ? NVML_SUCCESS : NVML_ERROR_UNKNOWN;
}

static int policy_limit_mw(const fake_device_t *d, unsigned int *mw) {
    policy_state_t state[MAX_GPUS];
    read_state(state);
    if (state[d->index].limit_mw < 0) return 0;
    *mw = (unsigned int)state[d->index].limit_mw;
    return 1;
}

static int policy_locked_max(const fake_device_t *d, unsigned int *mhz) {
    policy_state_t state[MAX_GPUS];
    read_state(state);
    if (state[d->index].max_mhz < 0) return 0;
    *mhz = (unsigned int)state[d->index].max_mhz;
    return 1;
}

static int denied(void) {
    const char *v = getenv("FAKE_NVML_NO_PERMISSION");
    return v && *v && strcmp(v, "0") != 0;
}

static void limit_range_mw(const fake_device_t *d, unsigned int *lo, unsigned int *hi) {
    *lo = (unsigned int)llround(env_double("FAKE_NVML_POWER_LIMIT_MIN_W", 200) * 1000.0);
    *hi = (unsigned int)llround(env_double("FAKE_NVML_POWER_LIMIT_MAX_W", 700) * 1000.0);
    (void)d;
}

/* The supported graphics clocks, highest first; returns how many. */
static int supported_clocks(const fake_device_t *d, unsigned int *out, int room) {
    const char *text = env_for("FAKE_NVML_SUPPORTED_CLOCKS", d->index);
    int n = 0;
    if (text && *text) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", text);
        for (char *tok = strtok(buf, ","); tok && n < room; tok = strtok(NULL, ","))
            out[n++] = (unsigned int)strtoul(tok, NULL, 10);
        return n;
    }
    long top = llround(at(&d->max_sm_clock, elapsed_s()));
    for (long mhz = top; mhz >= 210 && n < room; mhz -= 15) out[n++] = (unsigned int)mhz;
    return n;
}

EXPORT int nvmlDeviceGetPowerManagementLimitConstraints(fake_device_t *d, unsigned int *lo,
                                                        unsigned int *hi) {
    DEVICE_CALL("nvmlDeviceGetPowerManagementLimitConstraints", d, "power_limit", lo);
    if (!hi) return NVML_ERROR_INVALID_ARGUMENT;
    limit_range_mw(d, lo, hi);
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetPowerManagementDefaultLimit(fake_device_t *d, unsigned int *limit) {
    DEVICE_CALL("nvmlDeviceGetPowerManagementDefaultLimit", d, "power_limit", limit);
    *limit = (unsigned int)llround(at(&d->power_limit_w, elapsed_s()) * 1000.0);
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceSetPowerManagementLimit(fake_device_t *d, unsigned int limit) {
    int rc = check_device("nvmlDeviceSetPowerManagementLimit", d);
    if (rc != NVML_SUCCESS) return rc;
    if (unsupported(d, "power_limit")) return NVML_ERROR_NOT_SUPPORTED;
    if (denied()) return NVML_ERROR_NO_PERMISSION;
    unsigned int lo, hi;
    limit_range_mw(d, &lo, &hi);
    if (limit < lo || limit > hi) return NVML_ERROR_INVALID_ARGUMENT;
    policy_state_t state[MAX_GPUS];
    read_state(state);
    state[d->index].limit_mw = limit;
    return write_state(state);
}

EXPORT int nvmlDeviceSetGpuLockedClocks(fake_device_t *d, unsigned int lo, unsigned int hi) {
    int rc = check_device("nvmlDeviceSetGpuLockedClocks", d);
    if (rc != NVML_SUCCESS) return rc;
    if (unsupported(d, "locked_clocks")) return NVML_ERROR_NOT_SUPPORTED;
    if (denied()) return NVML_ERROR_NO_PERMISSION;
    if (lo > hi) return NVML_ERROR_INVALID_ARGUMENT;
    policy_state_t state[MAX_GPUS];
    read_state(state);
    state[d->index].min_mhz = lo;
    state[d->index].max_mhz = hi;
    return write_state(state);
}

EXPORT int nvmlDeviceResetGpuLockedClocks(fake_device_t *d) {
    int rc = check_device("nvmlDeviceResetGpuLockedClocks", d);
    if (rc != NVML_SUCCESS) return rc;
    if (unsupported(d, "locked_clocks")) return NVML_ERROR_NOT_SUPPORTED;
    if (denied()) return NVML_ERROR_NO_PERMISSION;
    policy_state_t state[MAX_GPUS];
    read_state(state);
    state[d->index].min_mhz = state[d->index].max_mhz = -1;
    return write_state(state);
}

EXPORT int nvmlDeviceGetSupportedMemoryClocks(fake_device_t *d, unsigned int *count,
                                              unsigned int *clocks) {
    DEVICE_CALL("nvmlDeviceGetSupportedMemoryClocks", d, "supported_clocks", count);
    if (!clocks || *count < 1) {
        *count = 1;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    *count = 1;
    clocks[0] = (unsigned int)llround(at(&d->max_mem_clock, elapsed_s()));
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetSupportedGraphicsClocks(fake_device_t *d, unsigned int mem_mhz,
                                                unsigned int *count, unsigned int *clocks) {
    DEVICE_CALL("nvmlDeviceGetSupportedGraphicsClocks", d, "supported_clocks", count);
    (void)mem_mhz;
    unsigned int all[256];
    int n = supported_clocks(d, all, 256);
    if (!clocks || *count < (unsigned int)n) {
        *count = (unsigned int)n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    memcpy(clocks, all, sizeof(unsigned int) * (size_t)n);
    *count = (unsigned int)n;
    return NVML_SUCCESS;
}
/* ==== end of clock and power policy ================================================ */

/* ---- fingerprint: VBIOS, PCIe link, default power limit, ECC, retired pages or
 * remapped rows, MIG mode (telemetry/nvml_fingerprint.py) ------------------------
 *
 * Read from the environment at each call (per GPU as <NAME>_<index>, schedules
 * allowed for the numbers, so a count can grow during a run), defaulting to a healthy
 * H100-like board:
 *   FAKE_NVML_VBIOS_VERSION        default "96.00.89.00.01"
 *   FAKE_NVML_PCIE_GEN, FAKE_NVML_PCIE_MAX_GEN       current and maximum generation (5, 5)
 *   FAKE_NVML_PCIE_WIDTH, FAKE_NVML_PCIE_MAX_WIDTH   current and maximum lanes (16, 16)
 *   FAKE_NVML_ECC, FAKE_NVML_ECC_PENDING  ECC mode, current and pending (1; pending:
 *                                  the current)
 *   FAKE_NVML_ECC_VOLATILE_CORRECTED, FAKE_NVML_ECC_VOLATILE_UNCORRECTED,
 *   FAKE_NVML_ECC_AGGREGATE_CORRECTED, FAKE_NVML_ECC_AGGREGATE_UNCORRECTED  counts (0)
 *   FAKE_NVML_MEMORY_REPAIR=rows|pages  rows (default; A100 and newer): remapped rows
 *                                  answer, retired pages are NOT_SUPPORTED; pages
 *                                  (V100 and older): the reverse
 *   FAKE_NVML_REMAPPED_CORRECTED, FAKE_NVML_REMAPPED_UNCORRECTED,
 *   FAKE_NVML_REMAPPED_PENDING, FAKE_NVML_REMAPPED_FAILURE  remapped rows (0)
 *   FAKE_NVML_RETIRED_SBE, FAKE_NVML_RETIRED_DBE, FAKE_NVML_RETIRED_PENDING  retired
 *                                  pages (multiple single-bit, double-bit) and pending (0)
 *   FAKE_NVML_MIG, FAKE_NVML_MIG_PENDING  MIG mode, current and pending (0; pending: the
 *                                  current)
 * FAKE_NVML_UNSUPPORTED names for these: vbios, pcie, default_power_limit, ecc (mode
 * and counts), ecc_counts, mig.
 */

static double fp_value(const fake_device_t *d, const char *name, double fallback) {
    schedule_t s;
    parse_schedule(&s, env_for(name, d->index), fallback);
    return at(&s, elapsed_s());
}

static unsigned int fp_uint(const fake_device_t *d, const char *name, double fallback) {
    return (unsigned int)llround(fp_value(d, name, fallback));
}

static int fp_repairs_rows(const fake_device_t *d) {
    const char *kind = env_for("FAKE_NVML_MEMORY_REPAIR", d->index);
    return !(kind && strcmp(kind, "pages") == 0);
}

EXPORT int nvmlDeviceGetVbiosVersion(fake_device_t *d, char *version, unsigned int length) {
    DEVICE_CALL("nvmlDeviceGetVbiosVersion", d, "vbios", version);
    const char *v = env_for("FAKE_NVML_VBIOS_VERSION", d->index);
    return copy_string(version, length, v && *v ? v : "96.00.89.00.01");
}

EXPORT int nvmlDeviceGetCurrPcieLinkGeneration(fake_device_t *d, unsigned int *gen) {
    DEVICE_CALL("nvmlDeviceGetCurrPcieLinkGeneration", d, "pcie", gen);
    *gen = fp_uint(d, "FAKE_NVML_PCIE_GEN", 5);
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetMaxPcieLinkGeneration(fake_device_t *d, unsigned int *gen) {
    DEVICE_CALL("nvmlDeviceGetMaxPcieLinkGeneration", d, "pcie", gen);
    *gen = fp_uint(d, "FAKE_NVML_PCIE_MAX_GEN", 5);
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetCurrPcieLinkWidth(fake_device_t *d, unsigned int *width) {
    DEVICE_CALL("nvmlDeviceGetCurrPcieLinkWidth", d, "pcie", width);
    *width = fp_uint(d, "FAKE_NVML_PCIE_WIDTH", 16);
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetMaxPcieLinkWidth(fake_device_t *d, unsigned int *width) {
    DEVICE_CALL("nvmlDeviceGetMaxPcieLinkWidth", d, "pcie", width);
    *width = fp_uint(d, "FAKE_NVML_PCIE_MAX_WIDTH", 16);
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetEccMode(fake_device_t *d, unsigned int *current, unsigned int *pending) {
    DEVICE_CALL("nvmlDeviceGetEccMode", d, "ecc", current);
    if (!pending) return NVML_ERROR_INVALID_ARGUMENT;
    *current = fp_uint(d, "FAKE_NVML_ECC", 1) != 0;
    *pending = fp_uint(d, "FAKE_NVML_ECC_PENDING", *current) != 0;
    return NVML_SUCCESS;
}

/* errorType 0 corrected, 1 uncorrected; counterType 0 volatile, 1 aggregate. */
EXPORT int nvmlDeviceGetTotalEccErrors(fake_device_t *d, int error_type, int counter_type,
                                       unsigned long long *count) {
    DEVICE_CALL("nvmlDeviceGetTotalEccErrors", d, "ecc", count);
    if (unsupported(d, "ecc_counts")) return NVML_ERROR_NOT_SUPPORTED;
    static const char *names[2][2] = {
        {"FAKE_NVML_ECC_VOLATILE_CORRECTED", "FAKE_NVML_ECC_VOLATILE_UNCORRECTED"},
        {"FAKE_NVML_ECC_AGGREGATE_CORRECTED", "FAKE_NVML_ECC_AGGREGATE_UNCORRECTED"}};
    if (error_type < 0 || error_type > 1 || counter_type < 0 || counter_type > 1)
        return NVML_ERROR_INVALID_ARGUMENT;
    *count = (unsigned long long)llround(fp_value(d, names[counter_type][error_type], 0));
    return NVML_SUCCESS;
}

/* cause 0: multiple single-bit errors, 1: a double-bit error; NVML's two-call protocol. */
EXPORT int nvmlDeviceGetRetiredPages(fake_device_t *d, int cause, unsigned int *count,
                                     unsigned long long *addresses) {
    DEVICE_CALL("nvmlDeviceGetRetiredPages", d, NULL, count);
    if (fp_repairs_rows(d)) return NVML_ERROR_NOT_SUPPORTED;
    if (cause < 0 || cause > 1) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int n = fp_uint(d, cause ? "FAKE_NVML_RETIRED_DBE" : "FAKE_NVML_RETIRED_SBE", 0);
    if (!addresses || *count < n) {
        *count = n;
        return n ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
    }
    for (unsigned int i = 0; i < n; i++) addresses[i] = 0x100000ULL * (i + 1) + (unsigned)cause;
    *count = n;
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetRetiredPagesPendingStatus(fake_device_t *d, unsigned int *pending) {
    DEVICE_CALL("nvmlDeviceGetRetiredPagesPendingStatus", d, NULL, pending);
    if (fp_repairs_rows(d)) return NVML_ERROR_NOT_SUPPORTED;
    *pending = fp_uint(d, "FAKE_NVML_RETIRED_PENDING", 0) != 0;
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetRemappedRows(fake_device_t *d, unsigned int *corrected,
                                     unsigned int *uncorrected, unsigned int *pending,
                                     unsigned int *failure) {
    DEVICE_CALL("nvmlDeviceGetRemappedRows", d, NULL, corrected);
    if (!uncorrected || !pending || !failure) return NVML_ERROR_INVALID_ARGUMENT;
    if (!fp_repairs_rows(d)) return NVML_ERROR_NOT_SUPPORTED;
    *corrected = fp_uint(d, "FAKE_NVML_REMAPPED_CORRECTED", 0);
    *uncorrected = fp_uint(d, "FAKE_NVML_REMAPPED_UNCORRECTED", 0);
    *pending = fp_uint(d, "FAKE_NVML_REMAPPED_PENDING", 0) != 0;
    *failure = fp_uint(d, "FAKE_NVML_REMAPPED_FAILURE", 0) != 0;
    return NVML_SUCCESS;
}

EXPORT int nvmlDeviceGetMigMode(fake_device_t *d, unsigned int *current, unsigned int *pending) {
    DEVICE_CALL("nvmlDeviceGetMigMode", d, "mig", current);
    if (!pending) return NVML_ERROR_INVALID_ARGUMENT;
    *current = fp_uint(d, "FAKE_NVML_MIG", 0) != 0;
    *pending = fp_uint(d, "FAKE_NVML_MIG_PENDING", *current) != 0;
    return NVML_SUCCESS;
}
