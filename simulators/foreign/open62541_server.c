/* An OPC-UA server on open62541 (a C stack we did not write), for tests/interop/test_opcua_open62541.py.
 *
 *   open62541_server PORT TICKLOG [--period MS] [--user NAME:PASSWORD]
 *                    [--cert CERT.der --key KEY.pem --uri APPLICATION_URI [--trust CLIENT.der]...]
 *
 * Objects/Plant (ns=1) holds one variable per built-in type, NodeId ns=1;s=<Type>. Every PERIOD ms
 * (default 100) tick k advances and every variable is written with the value of the formula below
 * (mirrored by simulators/foreign/values.py) and one SourceTimestamp; "k <SourceTimestamp in
 * 100 ns ticks since 1601>" is appended to TICKLOG, so a test can tell what the server set.
 * Double carries an EngineeringUnits property (EUInformation, degree Celsius).
 * --user: UserName login only (anonymous refused). --cert/--key: adds every security policy
 * (Basic256Sha256 Sign and SignAndEncrypt among them); --trust: only these client certificates
 * are accepted (without it every certificate is). No history.
 */
#include "open62541.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TRUST 8

static const char *NAMES[] = {"Boolean", "SByte", "Int16", "Int32", "Int64", "Byte", "UInt16",
                              "UInt32", "UInt64", "Float", "Double", "String", "DateTime"};
static const int TYPES[] = {UA_TYPES_BOOLEAN, UA_TYPES_SBYTE, UA_TYPES_INT16, UA_TYPES_INT32,
                            UA_TYPES_INT64, UA_TYPES_BYTE, UA_TYPES_UINT16, UA_TYPES_UINT32,
                            UA_TYPES_UINT64, UA_TYPES_FLOAT, UA_TYPES_DOUBLE, UA_TYPES_STRING,
                            UA_TYPES_DATETIME};
#define NVARS (sizeof(NAMES) / sizeof(NAMES[0]))

/* 2024-01-02T03:04:05.123456Z in microseconds since the Unix epoch. */
#define DATETIME_BASE_US 1704164645123456LL

static long long tick;
static FILE *ticklog;

/* The value of variable i at tick k, into v (the formula of simulators/foreign/values.py). */
static void value_at(size_t i, long long k, UA_Variant *v) {
    const UA_DataType *t = &UA_TYPES[TYPES[i]];
    union {
        UA_Boolean b; UA_SByte sb; UA_Int16 i16; UA_Int32 i32; UA_Int64 i64; UA_Byte by;
        UA_UInt16 u16; UA_UInt32 u32; UA_UInt64 u64; UA_Float f; UA_Double d; UA_DateTime dt;
    } x;
    char text[64];
    switch(TYPES[i]) {
    case UA_TYPES_BOOLEAN: x.b = (k % 2) == 1; break;
    case UA_TYPES_SBYTE: x.sb = (UA_SByte)(-128 + k % 256); break;
    case UA_TYPES_INT16: x.i16 = (UA_Int16)(INT16_MIN + k); break;
    case UA_TYPES_INT32: x.i32 = (UA_Int32)(INT32_MIN + k); break;
    case UA_TYPES_INT64: x.i64 = INT64_MIN + k; break;
    case UA_TYPES_BYTE: x.by = (UA_Byte)(255 - k % 256); break;
    case UA_TYPES_UINT16: x.u16 = (UA_UInt16)(UINT16_MAX - k); break;
    case UA_TYPES_UINT32: x.u32 = (UA_UInt32)(UINT32_MAX - k); break;
    case UA_TYPES_UINT64: x.u64 = UINT64_MAX - (UA_UInt64)k; break;
    case UA_TYPES_FLOAT: x.f = (UA_Float)(0.5 + 0.1 * (double)k); break;
    case UA_TYPES_DOUBLE: x.d = (double)k / 3.0 - 1000.0; break;
    case UA_TYPES_DATETIME:
        x.dt = (DATETIME_BASE_US + k * 1000000LL) * UA_DATETIME_USEC + UA_DATETIME_UNIX_EPOCH;
        break;
    case UA_TYPES_STRING: {
        snprintf(text, sizeof(text), "tick-%lld-\xc3\xa9", k); /* UTF-8: tick-<k>-e-acute */
        UA_String s = UA_STRING(text);
        UA_Variant_setScalarCopy(v, &s, t);
        return;
    }
    default: abort();
    }
    UA_Variant_setScalarCopy(v, &x, t);
}

static void write_all(UA_Server *server, long long k) {
    UA_DateTime now = UA_DateTime_now();
    for(size_t i = 0; i < NVARS; i++) {
        UA_DataValue dv;
        UA_DataValue_init(&dv);
        value_at(i, k, &dv.value);
        dv.hasValue = true;
        dv.sourceTimestamp = now;
        dv.hasSourceTimestamp = true;
        UA_StatusCode rc = UA_Server_writeDataValue(server, UA_NODEID_STRING(1, (char *)NAMES[i]), dv);
        UA_Variant_clear(&dv.value);
        if(rc != UA_STATUSCODE_GOOD) {
            fprintf(stderr, "write %s: %s\n", NAMES[i], UA_StatusCode_name(rc));
            exit(3);
        }
    }
    fprintf(ticklog, "%lld %lld\n", k, (long long)now);
    fflush(ticklog);
}

static void on_tick(UA_Server *server, void *data) {
    (void)data;
    write_all(server, ++tick);
}

static void add_variables(UA_Server *server) {
    UA_ObjectAttributes oattr = UA_ObjectAttributes_default;
    oattr.displayName = UA_LOCALIZEDTEXT("", "Plant");
    UA_NodeId plant = UA_NODEID_STRING(1, "Plant");
    UA_Server_addObjectNode(server, plant, UA_NODEID_NUMERIC(0, UA_NS0ID_OBJECTSFOLDER),
                            UA_NODEID_NUMERIC(0, UA_NS0ID_ORGANIZES), UA_QUALIFIEDNAME(1, "Plant"),
                            UA_NODEID_NUMERIC(0, UA_NS0ID_BASEOBJECTTYPE), oattr, NULL, NULL);
    for(size_t i = 0; i < NVARS; i++) {
        UA_VariableAttributes attr = UA_VariableAttributes_default;
        value_at(i, 0, &attr.value);
        attr.dataType = UA_TYPES[TYPES[i]].typeId;
        attr.valueRank = UA_VALUERANK_SCALAR;
        attr.displayName = UA_LOCALIZEDTEXT("", (char *)NAMES[i]);
        attr.accessLevel = UA_ACCESSLEVELMASK_READ;
        UA_StatusCode rc = UA_Server_addVariableNode(
            server, UA_NODEID_STRING(1, (char *)NAMES[i]), plant, UA_NODEID_NUMERIC(0, UA_NS0ID_HASCOMPONENT),
            UA_QUALIFIEDNAME(1, (char *)NAMES[i]), UA_NODEID_NUMERIC(0, UA_NS0ID_BASEDATAVARIABLETYPE),
            attr, NULL, NULL);
        UA_Variant_clear(&attr.value);
        if(rc != UA_STATUSCODE_GOOD) {
            fprintf(stderr, "add %s: %s\n", NAMES[i], UA_StatusCode_name(rc));
            exit(3);
        }
    }
    /* EngineeringUnits on Double: UNECE code CEL, as OPC-UA Part 8 defines it. */
    UA_EUInformation eu;
    UA_EUInformation_init(&eu);
    eu.namespaceUri = UA_STRING("http://www.opcfoundation.org/UA/units/un/cefact");
    eu.unitId = 4408652;
    eu.displayName = UA_LOCALIZEDTEXT("en", "\xc2\xb0" "C");
    eu.description = UA_LOCALIZEDTEXT("en", "degree Celsius");
    UA_VariableAttributes pattr = UA_VariableAttributes_default;
    UA_Variant_setScalar(&pattr.value, &eu, &UA_TYPES[UA_TYPES_EUINFORMATION]);
    pattr.dataType = UA_TYPES[UA_TYPES_EUINFORMATION].typeId;
    pattr.displayName = UA_LOCALIZEDTEXT("", "EngineeringUnits");
    UA_StatusCode rc = UA_Server_addVariableNode(
        server, UA_NODEID_STRING(1, "Double.EngineeringUnits"), UA_NODEID_STRING(1, "Double"),
        UA_NODEID_NUMERIC(0, UA_NS0ID_HASPROPERTY), UA_QUALIFIEDNAME(0, "EngineeringUnits"),
        UA_NODEID_NUMERIC(0, UA_NS0ID_PROPERTYTYPE), pattr, NULL, NULL);
    if(rc != UA_STATUSCODE_GOOD) {
        fprintf(stderr, "add EngineeringUnits: %s\n", UA_StatusCode_name(rc));
        exit(3);
    }
}

static UA_ByteString load(const char *path) {
    UA_ByteString out = UA_BYTESTRING_NULL;
    FILE *f = fopen(path, "rb");
    if(!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    out.data = (UA_Byte *)UA_malloc((size_t)n);
    out.length = (size_t)n;
    if(fread(out.data, 1, (size_t)n, f) != (size_t)n) { perror(path); exit(2); }
    fclose(f);
    return out;
}

static void usage(void) {
    fprintf(stderr, "usage: open62541_server PORT TICKLOG [--period MS] [--user NAME:PASSWORD] "
                    "[--cert DER --key PEM --uri URI [--trust DER]...]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if(argc < 3) usage();
    UA_UInt16 port = (UA_UInt16)atoi(argv[1]);
    ticklog = fopen(argv[2], "a");
    if(!ticklog) { perror(argv[2]); return 2; }
    double period = 100;
    const char *user = NULL, *cert = NULL, *key = NULL, *uri = NULL;
    const char *trust[MAX_TRUST];
    size_t ntrust = 0;
    for(int a = 3; a < argc; a++) {
        if(a + 1 >= argc) usage();
        if(!strcmp(argv[a], "--period")) period = atof(argv[++a]);
        else if(!strcmp(argv[a], "--user")) user = argv[++a];
        else if(!strcmp(argv[a], "--cert")) cert = argv[++a];
        else if(!strcmp(argv[a], "--key")) key = argv[++a];
        else if(!strcmp(argv[a], "--uri")) uri = argv[++a];
        else if(!strcmp(argv[a], "--trust") && ntrust < MAX_TRUST) trust[ntrust++] = argv[++a];
        else usage();
    }

    UA_Server *server = UA_Server_new();
    UA_ServerConfig *config = UA_Server_getConfig(server);
    UA_StatusCode rc;
    if(cert && key && uri) {
        UA_ByteString c = load(cert), k = load(key);
        UA_ByteString tl[MAX_TRUST];
        for(size_t i = 0; i < ntrust; i++) tl[i] = load(trust[i]);
        rc = UA_ServerConfig_setDefaultWithSecurityPolicies(config, port, &c, &k, tl, ntrust, NULL, 0, NULL, 0);
        UA_String_clear(&config->applicationDescription.applicationUri);
        config->applicationDescription.applicationUri = UA_STRING_ALLOC(uri);
        UA_ByteString_clear(&c);
        UA_ByteString_clear(&k);
        for(size_t i = 0; i < ntrust; i++) UA_ByteString_clear(&tl[i]);
    } else {
        rc = UA_ServerConfig_setMinimal(config, port, NULL);
    }
    if(rc != UA_STATUSCODE_GOOD) {
        fprintf(stderr, "config: %s\n", UA_StatusCode_name(rc));
        return 3;
    }
    if(user) {
        const char *colon = strchr(user, ':');
        if(!colon) usage();
        UA_UsernamePasswordLogin login;
        login.username.data = (UA_Byte *)user;
        login.username.length = (size_t)(colon - user);
        login.password = UA_STRING((char *)colon + 1);
        /* The last policy (the strongest) encrypts the password on a None channel. */
        const UA_ByteString *policy = config->securityPoliciesSize > 1
            ? &config->securityPolicies[config->securityPoliciesSize - 1].policyUri : NULL;
        rc = UA_AccessControl_default(config, false, policy, 1, &login);
        if(rc != UA_STATUSCODE_GOOD) {
            fprintf(stderr, "access control: %s\n", UA_StatusCode_name(rc));
            return 3;
        }
    }
    add_variables(server);
    write_all(server, 0);
    UA_Server_addRepeatedCallback(server, on_tick, NULL, period, NULL);
    rc = UA_Server_runUntilInterrupt(server);
    UA_Server_delete(server);
    fclose(ticklog);
    return rc == UA_STATUSCODE_GOOD ? 0 : 1;
}
