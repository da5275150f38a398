/*
 * Unit tests of the write connectors' pure parts (common/dw_target_int.h): the classification of
 * Dataverse and F&O error bodies, the $batch response parser, OData key paths of hostile values
 * and the $batch request body.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "dw_json.h"
#include "dw_target.h"
#include "dw_target_int.h"

static dw_wclass_t cls_of(bool fo, long status, const char *body, char *code, char *msg)
{
    char c[32], m[512];
    dw_wclass_t cls =
        dw_target_classify(fo, status, body, body ? strlen(body) : 0, c, sizeof(c), m, sizeof(m));
    if (code)
        strcpy(code, c);
    if (msg)
        strcpy(msg, m);
    return cls;
}

#define DV(status, code, msg)                                                                      \
    cls_of(false, status, "{\"error\":{\"code\":\"" code "\",\"message\":\"" msg "\"}}", NULL, NULL)
#define FO(status, msg)                                                                            \
    cls_of(true, status,                                                                           \
           "{\"error\":{\"code\":\"\",\"message\":\"" msg "\",\"innererror\":{\"message\":\"" msg  \
           "\",\"type\":\"Microsoft.Dynamics.Platform.Integration.Services.OData."                 \
           "AxODataWriteException\",\"stacktrace\":\"\"}}}",                                       \
           NULL, NULL)

Test(target, class_names)
{
    cr_assert_str_eq(dw_wclass_name(DW_WCLASS_OK), "ok");
    cr_assert_str_eq(dw_wclass_name(DW_WCLASS_TRANSIENT), "transient");
    cr_assert_str_eq(dw_wclass_name(DW_WCLASS_VALIDATION), "validation");
    cr_assert_str_eq(dw_wclass_name(DW_WCLASS_LOOKUP_MISSING), "lookup_missing");
    cr_assert_str_eq(dw_wclass_name(DW_WCLASS_SCHEMA_DRIFT), "schema_drift");
    cr_assert_str_eq(dw_wclass_name(DW_WCLASS_UNKNOWN), "unknown");
    cr_assert_str_eq(dw_wclass_name((dw_wclass_t)99), "unknown");
    dw_target_opts_t o;
    dw_target_opts_init(&o);
    cr_assert_eq(o.chunk_max, 1000);
    cr_assert_eq(o.concurrency, 4);
    cr_assert(o.upsert_multiple);
}

Test(target, classifies_dataverse_error_bodies)
{
    char code[32], msg[512];
    /* the emulator's unknown/dropped property and Dataverse's own wording */
    cr_assert_eq(cls_of(false, 400,
                        "{\"error\":{\"code\":\"0x80048d19\",\"message\":\"Error identified in "
                        "Payload provided by the user for Entity :'account'. Invalid property "
                        "'telephone1' was found in entity 'Microsoft.Dynamics.CRM.account'.\"}}",
                        code, msg),
                 DW_WCLASS_SCHEMA_DRIFT);
    cr_assert_str_eq(code, "0x80048d19");
    cr_assert(strstr(msg, "telephone1"));
    cr_assert_eq(DV(400, "0x80048d19",
                    "Error identified in Payload provided by the user for Entity :'', For more "
                    "information on this error please follow this help link "
                    "https://go.microsoft.com/fwlink/?linkid=2195293  ---->  InnerException : "
                    "Microsoft.OData.ODataException: The property 'foo' does not exist on type "
                    "'Microsoft.Dynamics.CRM.account'. Make sure to only use property names that "
                    "are defined by the type or mark the type as open type."),
                 DW_WCLASS_SCHEMA_DRIFT);
    cr_assert_eq(DV(400, "0x80048d19",
                    "Error identified in Payload provided by the user for Entity :'account'. An "
                    "undeclared property 'msdyn_x' which only has property annotations in the "
                    "payload but no property value was found in the payload."),
                 DW_WCLASS_SCHEMA_DRIFT);
    /* required column */
    cr_assert_eq(DV(400, "0x80044331",
                    "A validation error occurred. The value of 'name' on record of type 'account' "
                    "is required."),
                 DW_WCLASS_SCHEMA_DRIFT);
    /* content errors */
    cr_assert_eq(DV(400, "0x80044331",
                    "A validation error occurred. The length of the 'name' attribute of the "
                    "'account' entity exceeded the maximum allowed length of '160'."),
                 DW_WCLASS_VALIDATION);
    cr_assert_eq(
        DV(400, "0x80048d19",
           "Error identified in Payload provided by the user for Entity :'account'. Cannot convert "
           "the literal '\\\"x\\\"' to the expected type 'Edm.Decimal' of property 'creditlimit'."),
        DW_WCLASS_VALIDATION);
    cr_assert_eq(DV(400, "0x8004431a", "Value 5 is outside the valid range of the option set."),
                 DW_WCLASS_VALIDATION);
    cr_assert_eq(DV(412, "0x80040237", "A record with matching key values already exists."),
                 DW_WCLASS_VALIDATION);
    cr_assert_eq(DV(403, "0x80040220", "Principal user is missing prvWriteAccount privilege."),
                 DW_WCLASS_VALIDATION);
    /* a referenced row (@odata.bind) that does not exist */
    cr_assert_eq(DV(404, "0x80040217",
                    "cdm_company With Id = 6a1c5e0a-1111-4c36-9c7e-0a0b0c0d0e0f Does Not Exist"),
                 DW_WCLASS_LOOKUP_MISSING);
    cr_assert_eq(
        DV(404, "0x80040217",
           "A record with the specified key values does not exist in msdyn_customergroup entity"),
        DW_WCLASS_LOOKUP_MISSING);
    /* an unknown entity set is not a lookup */
    cr_assert_eq(DV(404, "0x8006088a", "Resource not found for the segment 'acounts'."),
                 DW_WCLASS_VALIDATION);
    /* service protection and outages */
    cr_assert_eq(
        DV(429, "0x80072322",
           "Number of requests exceeded the limit of 6000 over time window of 300 seconds."),
        DW_WCLASS_TRANSIENT);
    cr_assert_eq(DV(429, "0x80072321",
                    "Combined execution time of incoming requests exceeded limit of 1,200,000 "
                    "milliseconds over time window of 300 seconds. Decrease number of concurrent "
                    "requests or reduce the duration of requests and try again later."),
                 DW_WCLASS_TRANSIENT);
    cr_assert_eq(DV(503, "0x80040216", "The database is unavailable."), DW_WCLASS_TRANSIENT);
    cr_assert_eq(DV(500, "0x80040216", "An unexpected error occurred."), DW_WCLASS_TRANSIENT);
    cr_assert_eq(cls_of(false, 408, NULL, NULL, NULL), DW_WCLASS_TRANSIENT);
    cr_assert_eq(cls_of(false, 0, NULL, NULL, msg), DW_WCLASS_TRANSIENT);
    cr_assert_eq(cls_of(false, 401, "", NULL, NULL), DW_WCLASS_TRANSIENT);
    /* unreadable */
    cr_assert_eq(cls_of(false, 400, "<html>Bad Request</html>", code, msg), DW_WCLASS_UNKNOWN);
    cr_assert_str_eq(code, "");
    cr_assert(strstr(msg, "400"));
    cr_assert_eq(cls_of(false, 400, "", NULL, NULL), DW_WCLASS_UNKNOWN);
    cr_assert_eq(cls_of(false, 400, "{\"error\":{}}", NULL, NULL), DW_WCLASS_UNKNOWN);
    cr_assert_eq(cls_of(false, 400, "{\"error\":{\"code\":\"0x1\",\"message\":\"x\"", NULL, NULL),
                 DW_WCLASS_UNKNOWN);
    /* success */
    cr_assert_eq(cls_of(false, 204, "", code, msg), DW_WCLASS_OK);
    cr_assert_str_eq(msg, "");
}

Test(target, classifies_fo_error_bodies)
{
    char code[32], msg[512];
    cr_assert_eq(FO(400, "The property 'SalesMemo' does not exist on type "
                         "'Microsoft.Dynamics.DataEntities.CustomerV3'. Make sure to only use "
                         "property names that are defined by the type."),
                 DW_WCLASS_SCHEMA_DRIFT);
    cr_assert_eq(FO(400, "Write failed for table row of type 'CustomerV3'. Infolog: Error: Field "
                         "'CustomerGroupId' must be filled in."),
                 DW_WCLASS_SCHEMA_DRIFT);
    cr_assert_eq(
        FO(400, "Write failed for table row of type 'CustomerV3'. Infolog: Error: The value 'ZZ' "
                "in field 'Customer group' is not found in the related table 'Customer groups'."),
        DW_WCLASS_LOOKUP_MISSING);
    cr_assert_eq(FO(400, "Write failed for table row of type 'CustomerV3'. Infolog: Error: "
                         "Customer group 'ZZ' does not exist."),
                 DW_WCLASS_LOOKUP_MISSING);
    cr_assert_eq(
        FO(400, "Write failed for table row of type 'CustomerV3'. Infolog: Error: The value of "
                "field 'OrganizationName' is longer than its maximum length of 100 characters."),
        DW_WCLASS_VALIDATION);
    cr_assert_eq(FO(400, "Cannot convert the literal 'abc' to the expected type 'Edm.Decimal'."),
                 DW_WCLASS_VALIDATION);
    cr_assert_eq(
        cls_of(true, 400,
               "{\"error\":{\"code\":\"\",\"message\":\"Write failed for table row of type "
               "'CustomerV3'. Infolog: Error: Cannot create a record in CustomersV3. The record "
               "already "
               "exists.\",\"innererror\":{\"message\":\"x\",\"type\":\"t\",\"stacktrace\":\"\"}}}",
               code, msg),
        DW_WCLASS_VALIDATION);
    cr_assert(dw_target_fo_already_exists(400, msg));
    cr_assert_not(dw_target_fo_already_exists(204, msg));
    cr_assert_not(dw_target_fo_already_exists(400, "Field 'X' must be filled in."));
    /* the innererror says more than a generic outer message */
    cr_assert_eq(
        cls_of(
            true, 400,
            "{\"error\":{\"code\":\"\",\"message\":\"An error has "
            "occurred.\",\"innererror\":{\"message\":\"The property 'Foo' does not exist on type "
            "'Microsoft.Dynamics.DataEntities.CustomerV3'.\",\"type\":\"Microsoft.OData."
            "ODataException\",\"stacktrace\":\"\"}}}",
            code, msg),
        DW_WCLASS_SCHEMA_DRIFT);
    cr_assert(strstr(msg, "Foo"), "%s", msg);
    cr_assert_str_eq(code, "");
    cr_assert_eq(FO(429, "Too many requests"), DW_WCLASS_TRANSIENT);
    cr_assert_eq(FO(503, "The database is unavailable."), DW_WCLASS_TRANSIENT);
    cr_assert_eq(
        FO(404, "No HTTP resource was found that matches the request URI 'http://x/data/Nope'."),
        DW_WCLASS_VALIDATION);
    cr_assert_eq(cls_of(true, 400, "garbage", NULL, NULL), DW_WCLASS_UNKNOWN);
}

/* ---- multipart ---------------------------------------------------------------------------------
 */

static const char DV_CONTINUE[] =
    "--batchresponse_1d3e\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 1\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "OData-Version: 4.0\r\n"
    "OData-EntityId: "
    "http://127.0.0.1:1/api/data/v9.2/accounts(6a1c5e0a-1111-4c36-9c7e-0a0b0c0d0e0f)\r\n"
    "\r\n"
    "\r\n"
    "--batchresponse_1d3e\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 2\r\n"
    "\r\n"
    "HTTP/1.1 400 Bad Request\r\n"
    "Content-Type: application/json; odata.metadata=minimal\r\n"
    "OData-Version: 4.0\r\n"
    "\r\n"
    "{\"error\":{\"code\":\"0x80044331\",\"message\":\"A validation error occurred.\"}}\r\n"
    "--batchresponse_1d3e\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 429 Too Many Requests\r\n"
    "Retry-After: 7\r\n"
    "\r\n"
    "{\"error\":{\"code\":\"0x80072322\",\"message\":\"Number of requests exceeded the "
    "limit\"}}\r\n"
    "--batchresponse_1d3e--\r\n";

Test(target, parses_a_continue_on_error_response)
{
    dw_tpart_t *p = NULL;
    size_t n = 0;
    cr_assert_eq(dw_target_multipart_parse("multipart/mixed; boundary=batchresponse_1d3e",
                                           DV_CONTINUE, strlen(DV_CONTINUE), &p, &n),
                 DW_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(p[0].status, 204);
    cr_assert_str_eq(p[0].content_id, "1");
    cr_assert_str_eq(p[0].body, "");
    cr_assert_eq(p[0].changeset, -1);
    char g[37];
    cr_assert(dw_target_entity_guid(p[0].entity_id, g));
    cr_assert_str_eq(g, "6a1c5e0a-1111-4c36-9c7e-0a0b0c0d0e0f");
    cr_assert_eq(p[1].status, 400);
    cr_assert_str_eq(p[1].content_id, "2");
    cr_assert_str_eq(
        p[1].body,
        "{\"error\":{\"code\":\"0x80044331\",\"message\":\"A validation error occurred.\"}}");
    cr_assert_eq(dw_target_classify(false, p[1].status, p[1].body, p[1].body_len, NULL, 0, NULL, 0),
                 DW_WCLASS_VALIDATION);
    cr_assert_eq(p[2].status, 429);
    cr_assert_str_eq(p[2].content_id, "");
    cr_assert_eq(p[2].retry_after_ms, 7000);
    cr_assert_eq(p[1].retry_after_ms, -1);
    dw_target_parts_free(p, n);
}

static const char FO_STOPPED[] =
    "--batchresponse_a\r\n"
    "Content-Type: multipart/mixed; boundary=changesetresponse_b\r\n"
    "\r\n"
    "--changesetresponse_b\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 1\r\n"
    "\r\n"
    "HTTP/1.1 201 Created\r\n"
    "Location: http://h/data/CustomersV3(dataAreaId='usmf',CustomerAccount='C-1')\r\n"
    "Content-Type: application/json\r\n"
    "\r\n"
    "{\"CustomerAccount\":\"C-1\"}\r\n"
    "--changesetresponse_b--\r\n"
    "--batchresponse_a\r\n"
    "Content-Type: multipart/mixed; boundary=\"changesetresponse_c\"\r\n"
    "\r\n"
    "--changesetresponse_c\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "Content-ID: 2\r\n"
    "\r\n"
    "\r\n"
    "--changesetresponse_c--\r\n"
    "--batchresponse_a\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 3\r\n"
    "\r\n"
    "HTTP/1.1 400 Bad Request\r\n"
    "Content-Type: application/json\r\n"
    "\r\n"
    "{\"error\":{\"code\":\"\",\"message\":\"Write failed. The record already exists.\"}}\r\n"
    "--batchresponse_a--\r\n";

Test(target, parses_change_set_responses_and_a_stop_at_the_first_failure)
{
    dw_tpart_t *p = NULL;
    size_t n = 0;
    cr_assert_eq(dw_target_multipart_parse("multipart/mixed;boundary=batchresponse_a", FO_STOPPED,
                                           strlen(FO_STOPPED), &p, &n),
                 DW_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(p[0].status, 201);
    cr_assert_eq(p[0].changeset, 0);
    cr_assert_str_eq(p[0].content_id, "1");
    cr_assert_str_eq(p[0].entity_id,
                     "http://h/data/CustomersV3(dataAreaId='usmf',CustomerAccount='C-1')");
    cr_assert_str_eq(p[0].body, "{\"CustomerAccount\":\"C-1\"}");
    cr_assert_eq(p[1].status, 204);
    cr_assert_eq(p[1].changeset, 1);
    cr_assert_str_eq(p[1].content_id, "2", "an inner Content-ID counts too");
    cr_assert_eq(p[2].status, 400);
    cr_assert_eq(p[2].changeset, -1);
    cr_assert_str_eq(p[2].content_id, "3");
    cr_assert(dw_target_fo_already_exists(p[2].status, "Write failed. The record already exists."));
    char g[37];
    cr_assert_not(dw_target_entity_guid(p[0].entity_id, g));
    cr_assert_str_eq(g, "");
    dw_target_parts_free(p, n);
}

Test(target, truncated_and_malformed_responses_keep_the_complete_parts)
{
    dw_tpart_t *p = NULL;
    size_t n = 0;
    /* cut inside the second part: the first is kept */
    size_t cut = (size_t)(strstr(DV_CONTINUE, "HTTP/1.1 400") - DV_CONTINUE) + 20;
    cr_assert_eq(dw_target_multipart_parse("multipart/mixed; boundary=batchresponse_1d3e",
                                           DV_CONTINUE, cut, &p, &n),
                 DW_ERR_PARSE);
    cr_assert_eq(n, 1);
    cr_assert_eq(p[0].status, 204);
    dw_target_parts_free(p, n);
    /* no close delimiter but every part complete */
    size_t nocl = strlen(DV_CONTINUE) - strlen("--batchresponse_1d3e--\r\n");
    cr_assert_eq(dw_target_multipart_parse("multipart/mixed; boundary=batchresponse_1d3e",
                                           DV_CONTINUE, nocl, &p, &n),
                 DW_ERR_PARSE);
    cr_assert_eq(n, 2);
    dw_target_parts_free(p, n);
    /* wrong or missing boundary, not multipart, empty, junk status line */
    cr_assert_eq(dw_target_multipart_parse("multipart/mixed; boundary=other", DV_CONTINUE,
                                           strlen(DV_CONTINUE), &p, &n),
                 DW_ERR_PARSE);
    cr_assert_eq(n, 0);
    dw_target_parts_free(p, n);
    cr_assert_eq(
        dw_target_multipart_parse("multipart/mixed", DV_CONTINUE, strlen(DV_CONTINUE), &p, &n),
        DW_ERR_PARSE);
    dw_target_parts_free(p, n);
    cr_assert_eq(dw_target_multipart_parse("application/json", "{}", 2, &p, &n), DW_ERR_PARSE);
    dw_target_parts_free(p, n);
    cr_assert_eq(dw_target_multipart_parse("multipart/mixed; boundary=b", "", 0, &p, &n),
                 DW_ERR_PARSE);
    dw_target_parts_free(p, n);
    cr_assert_eq(dw_target_multipart_parse(NULL, NULL, 0, &p, &n), DW_ERR_PARSE);
    dw_target_parts_free(p, n);
    const char junk[] =
        "--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 2x4 No\r\n\r\n\r\n--b--\r\n";
    cr_assert_eq(
        dw_target_multipart_parse("multipart/mixed; boundary=b", junk, strlen(junk), &p, &n),
        DW_ERR_PARSE);
    cr_assert_eq(n, 0);
    dw_target_parts_free(p, n);
    const char nohdr[] = "--b\r\nContent-Type: application/http";
    cr_assert_eq(
        dw_target_multipart_parse("multipart/mixed; boundary=b", nohdr, strlen(nohdr), &p, &n),
        DW_ERR_PARSE);
    dw_target_parts_free(p, n);
    /* LF-only line ends are read too */
    const char lf[] = "--b\nContent-Type: application/http\nContent-ID: 4\n\nHTTP/1.1 204 No "
                      "Content\n\n\n--b--\n";
    cr_assert_eq(dw_target_multipart_parse("multipart/mixed; boundary=b", lf, strlen(lf), &p, &n),
                 DW_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(p[0].status, 204);
    cr_assert_str_eq(p[0].content_id, "4");
    dw_target_parts_free(p, n);
}

/* ---- keys and bodies ---------------------------------------------------------------------------
 */

static char *path_of(const char *set, const char *json, const char *guids, bool encode)
{
    json_t *k = json_loads(json, JSON_PRESERVE_ORDER, NULL),
           *g = guids ? json_loads(guids, 0, NULL) : NULL;
    cr_assert(k);
    char *p = dw_target_key_path(set, k, g, NULL, encode);
    json_decref(k);
    json_decref(g);
    return p;
}

Test(target, key_literals_of_hostile_values_are_escaped)
{
    char *p = path_of("CustomersV3", "{\"dataAreaId\":\"usmf\",\"CustomerAccount\":\"O'Neil\"}",
                      NULL, true);
    cr_assert_str_eq(p, "CustomersV3(dataAreaId=%27usmf%27,CustomerAccount=%27O%27%27Neil%27)");
    free(p);
    p = path_of("CustomersV3", "{\"CustomerAccount\":\"a(b)c/d\\\\e?f#g&h=i'') or 1 eq 1\"}", NULL,
                true);
    cr_assert_str_eq(p, "CustomersV3(CustomerAccount=%27a%28b%29c%2Fd%5Ce%3Ff%23g%26h%3Di%27%27%27%"
                        "27%29%20or%201%20eq%201%27)");
    p[strlen(p) - 1] = '\0';
    cr_assert_null(strpbrk(p + strlen("CustomersV3("), "()/'?# "), "%s", p + 12);
    free(p);
    p = path_of("CustomersV3", "{\"CustomerAccount\":\"M\\u00fcller \\u65e5\"}", NULL, true);
    cr_assert_str_eq(p, "CustomersV3(CustomerAccount=%27M%C3%BCller%20%E6%97%A5%27)");
    free(p);
    /* raw form (@odata.id in a JSON body): only the quotes doubled */
    p = path_of("accounts", "{\"accountnumber\":\"O'Neil (1)/x\",\"msdyn_company\":\"usmf\"}",
                "{\"msdyn_company\":\"6a1c5e0a-1111-4c36-9c7e-0a0b0c0d0e0f\"}", false);
    cr_assert_str_eq(p, "accounts(accountnumber='O''Neil "
                        "(1)/x',msdyn_company=6a1c5e0a-1111-4c36-9c7e-0a0b0c0d0e0f)");
    free(p);
    /* other literal types */
    p = path_of("Things", "{\"n\":42,\"b\":true,\"z\":null,\"r\":1.5}", NULL, true);
    cr_assert_str_eq(p, "Things(n=42,b=true,z=null,r=1.5)");
    free(p);
    cr_assert_null(path_of("Things", "{\"o\":{\"a\":1}}", NULL, true));
    cr_assert_null(path_of("Things", "{\"o\":[1]}", NULL, true));
    /* by row id */
    json_t *empty = json_object();
    p = dw_target_key_path("accounts", empty, NULL, "6a1c5e0a-1111-4c36-9c7e-0a0b0c0d0e0f", true);
    cr_assert_str_eq(p, "accounts(6a1c5e0a-1111-4c36-9c7e-0a0b0c0d0e0f)");
    free(p);
    cr_assert_null(dw_target_key_path("accounts", empty, NULL, NULL, true));
    cr_assert_null(dw_target_key_path("accounts", NULL, NULL, NULL, true));
    json_decref(empty);
}

Test(target, batch_bodies_number_their_parts)
{
    dw_treq_t r[2] = {
        {"PATCH", "http://h/data/CustomersV3(dataAreaId=%27usmf%27,CustomerAccount=%27A%27)",
         "{\"x\":1}", "corr-1"},
        {"DELETE", "http://h/data/CustomersV3(dataAreaId=%27usmf%27,CustomerAccount=%27B%27)", NULL,
         "bad\r\nInjected: 1"},
    };
    size_t len = 0;
    char *b = dw_target_batch_body("batch_x", r, 2, true, &len);
    cr_assert(b);
    cr_assert_eq(len, strlen(b));
    cr_assert(strstr(b, "--batch_x\r\nContent-Type: multipart/mixed; "
                        "boundary=changeset_1_batch_x\r\n\r\n--changeset_1_batch_x\r\n"));
    cr_assert(strstr(
        b,
        "Content-ID: 1\r\n\r\nPATCH "
        "http://h/data/CustomersV3(dataAreaId=%27usmf%27,CustomerAccount=%27A%27) HTTP/1.1\r\n"));
    cr_assert(strstr(b, "x-ms-correlation-request-id: corr-1\r\n"));
    cr_assert(strstr(b, "IEEE754Compatible=true\r\n\r\n{\"x\":1}\r\n--changeset_1_batch_x--\r\n"));
    cr_assert(strstr(b, "Content-ID: 2\r\n\r\nDELETE "));
    cr_assert_null(strstr(b, "Injected"), "a correlation id with CR/LF is not sent");
    cr_assert(strstr(b, "--changeset_2_batch_x--\r\n--batch_x--\r\n"));
    free(b);
    b = dw_target_batch_body("batch_y", r, 1, false, &len);
    cr_assert_null(strstr(b, "changeset"));
    cr_assert(strstr(b, "--batch_y\r\nContent-Type: application/http\r\n"));
    cr_assert(strstr(b, "\r\n--batch_y--\r\n"));
    free(b);
}

Test(target, row_ids_from_entity_ids_and_rows)
{
    char g[37];
    cr_assert(dw_target_entity_guid(
        "http://h/api/data/v9.2/accounts(6A1C5E0A-1111-4c36-9c7e-0a0b0c0d0e0f)", g));
    cr_assert_str_eq(g, "6A1C5E0A-1111-4c36-9c7e-0a0b0c0d0e0f");
    cr_assert_not(dw_target_entity_guid("accounts(accountnumber='x')", g));
    cr_assert_not(dw_target_entity_guid("accounts(6a1c5e0a-1111-4c36-9c7e-0a0b0c0d0e0)", g));
    cr_assert_not(dw_target_entity_guid(NULL, g));
    json_t *row = json_pack("{s:s,s:s,s:s,s:s}", "_ownerid_value",
                            "11111111-1111-1111-1111-111111111111", "cdm_companycode", "usmf",
                            "cdm_companyid", "22222222-2222-2222-2222-222222222222", "otherid",
                            "33333333-3333-3333-3333-333333333333");
    cr_assert_str_eq(dw_target_row_guid(row, "cdm_companies"),
                     "22222222-2222-2222-2222-222222222222");
    cr_assert_null(dw_target_row_guid(row, "accounts"),
                   "two candidates and none named after the set");
    json_object_del(row, "otherid");
    cr_assert_str_eq(dw_target_row_guid(row, "accounts"), "22222222-2222-2222-2222-222222222222");
    json_decref(row);
}

Test(target, reads_the_members_of_an_object_text)
{
    const char *text =
        " { \"a\" : \"x,}\\\"y\" , \"b\\u00e9\":{\"c\":[1,{\"d\":\"]\"}]},\"e\":-1.5e3,"
        "\"f\":true , \"g\":null}";
    dw_tobj_t it;
    const char *k, *v;
    size_t kl, vl;
    bool kesc;
    dw_tobj_init(&it, text, strlen(text));
    cr_assert(dw_tobj_next(&it, &k, &kl, &kesc, &v, &vl));
    cr_assert_eq(kl, 1);
    cr_assert_not(kesc);
    cr_assert_eq(vl, strlen("\"x,}\\\"y\""));
    cr_assert_eq(strncmp(v, "\"x,}\\\"y\"", vl), 0);
    char out[64];
    cr_assert(dw_json_unescape(v + 1, vl - 2, out, sizeof(out), NULL));
    cr_assert_str_eq(out, "x,}\"y");
    cr_assert(dw_tobj_next(&it, &k, &kl, &kesc, &v, &vl));
    cr_assert(kesc);
    cr_assert(dw_json_unescape(k, kl, out, sizeof(out), NULL));
    cr_assert_str_eq(out, "b\xc3\xa9");
    cr_assert_eq(strncmp(v, "{\"c\":[1,{\"d\":\"]\"}]}", vl), 0);
    cr_assert_eq(vl, strlen("{\"c\":[1,{\"d\":\"]\"}]}"));
    cr_assert(dw_tobj_next(&it, &k, &kl, &kesc, &v, &vl));
    cr_assert_eq(strncmp(v, "-1.5e3", vl), 0);
    cr_assert_eq(vl, 6);
    cr_assert(dw_tobj_next(&it, &k, &kl, &kesc, &v, &vl));
    cr_assert_eq(strncmp(v, "true", vl), 0);
    cr_assert(dw_tobj_next(&it, &k, &kl, &kesc, &v, &vl));
    cr_assert_eq(strncmp(v, "null", vl), 0);
    cr_assert_not(dw_tobj_next(&it, &k, &kl, &kesc, &v, &vl));
    /* surrogate pairs, and what does not fit */
    cr_assert(dw_json_unescape("\\ud83d\\ude00\\n", 14, out, sizeof(out), NULL));
    cr_assert_str_eq(out, "\xf0\x9f\x98\x80\n");
    cr_assert_not(dw_json_unescape("abcdef", 6, out, 4, NULL));
    dw_tobj_init(&it, "{}", 2);
    cr_assert_not(dw_tobj_next(&it, &k, &kl, &kesc, &v, &vl));
}
