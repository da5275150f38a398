/*
 * dw_bench: the helpers every benchmark binary shares (see dw_bench.h).
 */
#include "dw_bench.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

extern char **environ;

int dw_bench_std_args(int argc, char **argv, const char *name, const char *usage)
{
    if (argc < 2)
        return -1;
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        printf("Usage: %s %s", name, usage);
        return 0;
    }
    if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("%s %s (%s) librdkafka %s\n", name, DW_VERSION, DW_GIT_REV, rd_kafka_version_str());
        return 0;
    }
    return -1;
}

double dw_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int dw_bench_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof(a);
    int port = -1;
    if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(s, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (s >= 0)
        close(s);
    return port;
}

pid_t dw_bench_spawn(const char *bin_dir, const char *bin, const char *const *argv, const char *log)
{
    char path[512];
    pid_t pid = -1;
    snprintf(path, sizeof(path), "%s/%s", bin_dir, bin);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (posix_spawn(&pid, path, &fa, NULL, (char *const *)argv, environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

static int exit_code(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int dw_bench_run_wait(const char *bin_dir, const char *bin, const char *const *argv,
                      const char *log)
{
    pid_t pid = dw_bench_spawn(bin_dir, bin, argv, log);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return exit_code(st);
}

int dw_bench_stop(pid_t *pid, struct rusage *ru)
{
    if (*pid <= 0)
        return -1;
    kill(*pid, SIGTERM);
    int st = 0;
    struct rusage r;
    memset(&r, 0, sizeof(r));
    pid_t w = wait4(*pid, &st, 0, &r);
    if (ru)
        *ru = r;
    *pid = -1;
    return w < 0 ? -1 : exit_code(st);
}

int dw_bench_proc_cpu(pid_t pid, unsigned long long *ticks, unsigned long long *start, char *comm)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) state ...": comm may hold spaces and parentheses, so fields are counted from
     * the last ')'; utime and stime are fields 14 and 15, starttime 22 */
    char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    unsigned long long ut, st;
    if (!open || !close || close < open ||
        sscanf(
            close + 1,
            " %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu %*s %*s %*s %*s %*s %*s %llu",
            &ut, &st, start) != 3)
        return -1;
    *ticks = ut + st;
    if (comm)
        snprintf(comm, 16, "%.*s", (int)(close - open - 1), open + 1);
    return 0;
}

double dw_bench_proc_cpu_s(pid_t pid)
{
    unsigned long long ticks, start;
    if (dw_bench_proc_cpu(pid, &ticks, &start, NULL))
        return -1;
    return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

static size_t sink_cb(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

static size_t buf_cb(char *p, size_t s, size_t n, void *ud)
{
    char *b = ud;
    size_t l = strlen(b), k = s * n;
    if (l + k < 8191) {
        memcpy(b + l, p, k);
        b[l + k] = '\0';
    }
    return k;
}

long dw_bench_http(CURL *c, const char *method, const char *url, const char *body,
                   const char *token, char *out)
{
    struct curl_slist *h = NULL;
    char auth[4200];
    if (token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    if (body)
        h = curl_slist_append(h, strncmp(body, "client_id", 9) == 0
                                     ? "Content-Type: application/x-www-form-urlencoded"
                                     : "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    if (out)
        out[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, out ? buf_cb : sink_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    long st = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(h);
    return st;
}

int dw_bench_wait_http(const char *url, double timeout_s)
{
    CURL *c = curl_easy_init();
    double t0 = dw_bench_now();
    long st = 0;
    while (dw_bench_now() - t0 < timeout_s &&
           !(st = dw_bench_http(c, "GET", url, NULL, NULL, NULL)))
        usleep(50000);
    curl_easy_cleanup(c);
    return st ? 0 : -1;
}

int dw_bench_token(int port, char *token, size_t size)
{
    char url[128], out[8192];
    CURL *c = curl_easy_init();
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/b/oauth2/v2.0/token", port);
    long st = dw_bench_http(c, "POST", url,
                            "client_id=dwfleet&client_secret=dwfleet-local-secret&grant_type="
                            "client_credentials&scope=https%3A%2F%2Fx.example%2F.default",
                            NULL, out);
    curl_easy_cleanup(c);
    json_t *j = json_loads(out, 0, NULL);
    const char *t = json_string_value(json_object_get(j, "access_token"));
    int rc = st == 200 && t ? 0 : -1;
    snprintf(token, size, "%s", t ? t : "");
    json_decref(j);
    return rc;
}

static const char customer_fmt[] =
    "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"US-%07d\",\"PartyType\":\"Organization\","
    "\"PartyNumber\":\"000001234\",\"OrganizationName\":\"Contoso Retail San Diego\","
    "\"PersonFirstName\":\"\",\"PersonMiddleName\":\"\",\"PersonLastName\":\"\","
    "\"PersonProfessionalTitle\":\"\",\"CustomerGroupId\":\"30\",\"SalesCurrencyCode\":\"USD\","
    "\"CreditLimit\":125000.5,\"CreditLimitIsMandatory\":\"Yes\",\"IsOneTimeCustomer\":\"No\","
    "\"OnHoldStatus\":\"No\",\"PaymentTerms\":\"Net30\",\"InvoiceAccount\":\"US-001\","
    "\"LanguageId\":\"en-us\",\"PrimaryContactEmail\":\"orders@contoso.example\","
    "\"PrimaryContactPhone\":\"+1 619 555 0100\",\"SalesMemo\":\"Deliver to dock 4, "
    "mornings only.\",\"AddressCity\":\"San Diego\",\"AddressStreet\":\"123 Coffee Street\","
    "\"AddressZipCode\":\"92101\",\"AddressCountryRegionISOCode\":\"US\",\"AddressState\":\"CA\","
    "\"DeliveryAddressCity\":\"San Diego\",\"DeliveryAddressStreet\":\"123 Coffee Street, "
    "Suite 300\",\"DeliveryAddressZipCode\":\"92101\",\"DeliveryAddressCountryRegionISOCode\":"
    "\"US\",\"DeliveryAddressState\":\"CA\"}";

int dw_bench_customer_event(char *buf, size_t size, const char *m, int i)
{
    char data[2048];
    snprintf(data, sizeof(data), customer_fmt, i);
    return snprintf(buf, size,
                    "{\"version\":1,\"event_id\":\"00000000-0000-4000-8000-%012d\",\"map\":"
                    "\"%s\",\"source\":\"fo\",\"op\":\"upsert\",\"key\":{\"dataAreaId\":"
                    "\"usmf\",\"CustomerAccount\":\"US-%07d\"},\"data\":%s,\"source_version\":"
                    "\"1709287200000000\",\"source_ts\":\"2024-03-01T10:00:00Z\",\"capture_ts\":"
                    "\"2024-03-01T10:00:00.125Z\",\"correlation_id\":"
                    "\"5d0c1f27-6a0e-4d0f-8f73-7e0d2b8d9a42\"}",
                    i, m, i, data);
}
