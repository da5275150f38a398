/*
 * emu_auth: OAuth2 for the emulators. A token endpoint that accepts the Microsoft Entra ID v2
 * client-credentials form (POST /<tenant>/oauth2/v2.0/token, application/x-www-form-urlencoded:
 * client_id, client_secret, grant_type=client_credentials, scope=<resource>/.default) and answers
 * {"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"..."}; and
 * bearer validation of API requests (401 with WWW-Authenticate otherwise).
 */
#ifndef EMU_AUTH_H
#define EMU_AUTH_H

#include <stdbool.h>

#include "emu_http.h"

typedef struct emu_auth_s emu_auth_t;

/* clients: "id:secret[,id:secret...]" (borrowed, copied). token_ttl: seconds. */
emu_auth_t *emu_auth_new(const char *clients, int token_ttl, const char *resource_url);
void emu_auth_destroy(emu_auth_t *auth);

/* True when req->path is a token endpoint path ("/<tenant>/oauth2/v2.0/token"). */
bool emu_auth_is_token_path(const char *path);

/* Handle the token request (any method; non-POST gets 405). */
void emu_auth_token(emu_auth_t *auth, emu_req_t *req, emu_resp_t *resp);

/* Check the Authorization header; on success copy the client id into req->client and return
 * true; otherwise fill resp with 401 and return false. */
bool emu_auth_check(emu_auth_t *auth, emu_req_t *req, emu_resp_t *resp);

/* Decode application/x-www-form-urlencoded field name from body into out; false when absent. */
bool emu_form_get(const char *body, const char *name, char *out, size_t out_size);

#endif
