/*
 * Unit tests of the emu_batch multipart parser: the request shape of Microsoft Learn's "Execute
 * batch operations using the Web API" (a change set with Content-IDs, then a GET), quoted
 * boundaries and bare LF lines, malformed bodies (400 material), nesting and the request limit.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "emu_batch.h"

static const char doc_example[] =
    "--batch_AAA123\r\n"
    "Content-Type: multipart/mixed; boundary=changeset_BBB456\r\n"
    "\r\n"
    "--changeset_BBB456\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding:binary\r\n"
    "Content-ID: 1\r\n"
    "\r\n"
    "POST https://org.crm.dynamics.com/api/data/v9.2/tasks HTTP/1.1\r\n"
    "Content-Type: application/json; type=entry\r\n"
    "\r\n"
    "{\"subject\":\"Task 1 in batch\"}\r\n"
    "--changeset_BBB456\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding:binary\r\n"
    "Content-ID: 2\r\n"
    "\r\n"
    "PATCH $1 HTTP/1.1\r\n"
    "Content-Type: application/json\r\n"
    "\r\n"
    "{\"regardingobjectid_account_task@odata.bind\":\"$1\"}\r\n"
    "--changeset_BBB456--\r\n"
    "\r\n"
    "--batch_AAA123\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding:binary\r\n"
    "\r\n"
    "GET accounts?$select=name&$top=2 HTTP/1.1\r\n"
    "Accept: application/json\r\n"
    "\r\n"
    "--batch_AAA123--\r\n";

Test(emu_batch, parses_the_documented_change_set_example)
{
    emu_batch_t b;
    char err[512];
    cr_assert_eq(emu_batch_parse("multipart/mixed; boundary=batch_AAA123", doc_example, strlen(doc_example),
                                 1000, &b, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_eq(b.nparts, 3);
    cr_assert_eq(b.nchangesets, 1);
    cr_assert_str_eq(b.parts[0].method, "POST");
    cr_assert_str_eq(b.parts[0].url, "https://org.crm.dynamics.com/api/data/v9.2/tasks");
    cr_assert_str_eq(b.parts[0].content_id, "1");
    cr_assert_eq(b.parts[0].changeset, 0);
    cr_assert_str_eq(b.parts[0].body, "{\"subject\":\"Task 1 in batch\"}");
    cr_assert_eq(b.parts[0].nheaders, 1);
    cr_assert_str_eq(b.parts[0].hname[0], "Content-Type");
    cr_assert_str_eq(b.parts[0].hvalue[0], "application/json; type=entry");
    cr_assert_str_eq(b.parts[1].method, "PATCH");
    cr_assert_str_eq(b.parts[1].url, "$1");
    cr_assert_str_eq(b.parts[1].content_id, "2");
    cr_assert_str_eq(b.parts[2].method, "GET");
    cr_assert_eq(b.parts[2].changeset, -1);
    cr_assert_null(b.parts[2].content_id);
    cr_assert_str_eq(b.parts[2].url, "accounts?$select=name&$top=2");
    cr_assert_eq(b.parts[2].body_len, 0);
    emu_batch_clear(&b);
}

Test(emu_batch, accepts_a_quoted_boundary_and_bare_lf_lines)
{
    const char *body = "preamble\n--b1\nContent-Type: application/http\n\nDELETE accounts(00000000-0000-0000-0000-000000000001) HTTP/1.1\n\n--b1--\nepilogue";
    emu_batch_t b;
    char err[512];
    cr_assert_eq(emu_batch_parse("Multipart/Mixed;Boundary=\"b1\"", body, strlen(body), 1000, &b, err, sizeof(err)),
                 DW_OK, "%s", err);
    cr_assert_eq(b.nparts, 1);
    cr_assert_str_eq(b.parts[0].method, "DELETE");
    cr_assert_eq(b.parts[0].body_len, 0);
    emu_batch_clear(&b);
}

Test(emu_batch, a_body_keeps_its_inner_line_breaks)
{
    const char *body = "--x\r\nContent-Type: application/http\r\n\r\nPOST accounts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\r\n\"name\":\"a\"\r\n}\r\n--x--";
    emu_batch_t b;
    char err[512];
    cr_assert_eq(emu_batch_parse("multipart/mixed;boundary=x", body, strlen(body), 1000, &b, err, sizeof(err)), DW_OK, "%s", err);
    cr_assert_str_eq(b.parts[0].body, "{\r\n\"name\":\"a\"\r\n}");
    emu_batch_clear(&b);
}

static dw_err_t parse(const char *ct, const char *body, size_t max)
{
    emu_batch_t b;
    char err[512];
    dw_err_t e = emu_batch_parse(ct, body, strlen(body), max, &b, err, sizeof(err));
    cr_assert(e == DW_OK || err[0], "an error needs a message");
    emu_batch_clear(&b);
    return e;
}

Test(emu_batch, rejects_malformed_multipart)
{
    const char *ok_part = "--b\r\nContent-Type: application/http\r\n\r\nGET accounts HTTP/1.1\r\n\r\n--b--\r\n";
    cr_assert_eq(parse(NULL, ok_part, 10), DW_ERR_PARSE);
    cr_assert_eq(parse("application/json", ok_part, 10), DW_ERR_PARSE);
    cr_assert_eq(parse("multipart/mixed", ok_part, 10), DW_ERR_PARSE, "no boundary");
    cr_assert_eq(parse("multipart/mixed; boundary=\"b", ok_part, 10), DW_ERR_PARSE, "unbalanced quote");
    cr_assert_eq(parse("multipart/mixed; boundary=other", ok_part, 10), DW_ERR_PARSE, "boundary not in body");
    cr_assert_eq(parse("multipart/mixed; boundary=b", "--b\r\nContent-Type: application/http\r\n\r\nGET accounts HTTP/1.1\r\n", 10),
                 DW_ERR_PARSE, "no close delimiter");
    cr_assert_eq(parse("multipart/mixed; boundary=b", "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--", 10), DW_ERR_PARSE);
    cr_assert_eq(parse("multipart/mixed; boundary=b", "--b\r\nContent-Type: application/http\r\n\r\nFETCH accounts HTTP/1.1\r\n\r\n--b--", 10), DW_ERR_PARSE);
    cr_assert_eq(parse("multipart/mixed; boundary=b", "--b\r\nContent-Type: application/http\r\n\r\nGET accounts\r\n\r\n--b--", 10), DW_ERR_PARSE);
    cr_assert_eq(parse("multipart/mixed; boundary=b", "--b\r\nno colon here\r\n\r\nGET accounts HTTP/1.1\r\n\r\n--b--", 10), DW_ERR_PARSE);
    cr_assert_eq(parse("multipart/mixed; boundary=b", "", 10), DW_ERR_PARSE);
    cr_assert_eq(parse("multipart/mixed; boundary=b", ok_part, 10), DW_OK);
}

Test(emu_batch, change_sets_do_not_nest_and_hold_no_get)
{
    const char *nested =
        "--b\r\nContent-Type: multipart/mixed; boundary=c1\r\n\r\n"
        "--c1\r\nContent-Type: multipart/mixed; boundary=c2\r\n\r\n--c2\r\nContent-Type: application/http\r\n\r\nPOST accounts HTTP/1.1\r\n\r\n{}\r\n--c2--\r\n"
        "--c1--\r\n--b--\r\n";
    cr_assert_eq(parse("multipart/mixed; boundary=b", nested, 10), DW_ERR_PARSE);
    const char *get =
        "--b\r\nContent-Type: multipart/mixed; boundary=c1\r\n\r\n"
        "--c1\r\nContent-Type: application/http\r\n\r\nGET accounts HTTP/1.1\r\n\r\n--c1--\r\n--b--\r\n";
    cr_assert_eq(parse("multipart/mixed; boundary=b", get, 10), DW_ERR_PARSE);
    const char *dup =
        "--b\r\nContent-Type: multipart/mixed; boundary=c1\r\n\r\n"
        "--c1\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\nPOST accounts HTTP/1.1\r\n\r\n{}\r\n"
        "--c1\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\nPOST accounts HTTP/1.1\r\n\r\n{}\r\n--c1--\r\n--b--\r\n";
    cr_assert_eq(parse("multipart/mixed; boundary=b", dup, 10), DW_ERR_PARSE, "duplicate Content-ID");
}

Test(emu_batch, counts_change_set_members_against_the_limit)
{
    const char *body =
        "--b\r\nContent-Type: multipart/mixed; boundary=c1\r\n\r\n"
        "--c1\r\nContent-Type: application/http\r\n\r\nPOST accounts HTTP/1.1\r\n\r\n{}\r\n"
        "--c1\r\nContent-Type: application/http\r\n\r\nPOST accounts HTTP/1.1\r\n\r\n{}\r\n--c1--\r\n"
        "--b\r\nContent-Type: application/http\r\n\r\nGET accounts HTTP/1.1\r\n\r\n--b--\r\n";
    cr_assert_eq(parse("multipart/mixed; boundary=b", body, 3), DW_OK);
    cr_assert_eq(parse("multipart/mixed; boundary=b", body, 2), DW_ERR_INVALID_ARG);
}

Test(emu_batch, reason_phrases)
{
    cr_assert_str_eq(emu_http_reason(204), "No Content");
    cr_assert_str_eq(emu_http_reason(412), "Precondition Failed");
}
