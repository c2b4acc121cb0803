// memos as a host built on the official MCP TypeScript SDK sees it: connect (streamable HTTP with a bearer
// token, or stdio through `memos mcp`), check every tool's input and output schema with Ajv, call the main
// tools with arguments checked against their input schemas and results checked against their output
// schemas, read a resource, subscribe to it and receive notifications/resources/updated.
//
// Usage: node compat.mjs '<json>' where json is
//   {"transport": "http", "url": "...", "token": "...", "peer": "agent"} or
//   {"transport": "stdio", "command": "...", "args": [...], "env": {...}, "cwd": "...", "peer": "agent"}
// With "startedFirst": true the daemon is not up yet: the client checks that it lists the tools and that a
// call fails clearly, prints {"waiting": true}, and waits for list_changed (the caller starts memosd).
// Prints one JSON summary line on stdout and exits 0, or prints what failed on stderr and exits 1.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { isDeepStrictEqual } from 'node:util';

const options = JSON.parse(process.argv[2]);

function check(condition, message) {
    if (!condition) throw new Error(message);
}

// Two validators: the SDK's own (what it runs on every structured result), and JSON Schema 2020-12 (the
// dialect MCP names) with the schema itself checked against the meta-schema.
const sdkValidator = new AjvJsonSchemaValidator();
const ajv2020 = new Ajv2020({ strict: false, validateSchema: true, allErrors: true });
addFormats(ajv2020);

function validatorFor(schema, what) {
    let sdk, spec;
    try {
        sdk = sdkValidator.getValidator(schema);
        spec = ajv2020.compile(schema);
    } catch (err) {
        throw new Error(`${what} is not a valid JSON Schema: ${err.message}`);
    }
    return (value, about) => {
        const bySdk = sdk(value);
        check(bySdk.valid, `${about} does not match ${what} (SDK validator): ${bySdk.errorMessage}`);
        check(spec(value), `${about} does not match ${what} (2020-12): ${ajv2020.errorsText(spec.errors)}`);
    };
}

function transport() {
    if (options.transport === 'http') {
        return new StreamableHTTPClientTransport(new URL(options.url), {
            requestInit: { headers: { Authorization: `Bearer ${options.token}` } },
        });
    }
    return new StdioClientTransport({
        command: options.command,
        args: options.args,
        env: options.env,
        cwd: options.cwd,
        stderr: 'inherit',
    });
}

// The SDK re-lists on list_changed by itself (when the server advertises listChanged) and hands us the lists.
const refreshed = {};
const onChanged = (kind) => (error, items) => {
    refreshed[kind] = error ?? items;
};
const client = new Client(
    { name: 'memos-ts-compat', version: '1.0.0' },
    {
        capabilities: {},
        listChanged: { tools: { onChanged: onChanged('tools') }, resources: { onChanged: onChanged('resources') } },
    },
);
const updated = [];
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (note) => {
    updated.push(note.params.uri);
});

await client.connect(transport());
const server = client.getServerVersion();
check(server?.name === 'memos' && server.version, `server info: ${JSON.stringify(server)}`);
check(client.getInstructions()?.includes('memory_search'), `instructions: ${client.getInstructions()}`);
const capabilities = client.getServerCapabilities();
check(capabilities?.tools && capabilities.resources?.subscribe, `capabilities: ${JSON.stringify(capabilities)}`);

async function until(condition, seconds, failure) {
    const deadline = Date.now() + seconds * 1000;
    while (!condition()) {
        check(Date.now() < deadline, failure);
        await new Promise((resolve) => setTimeout(resolve, 50));
    }
}

const { tools } = await client.listTools();
check(tools.some((t) => t.name === 'memory_add'), `tools/list: ${JSON.stringify(tools.map((t) => t.name))}`);
if (options.startedFirst) {
    const early = await client.callTool({ name: 'memory_add', arguments: { content: 'too early' } });
    const said = early.content?.map((c) => c.text).join(' ');
    check(early.isError && said.includes('not reachable') && said.includes('memosd'), `before memosd: ${said}`);
    console.log(JSON.stringify({ waiting: true }));
    await until(() => refreshed.tools && refreshed.resources, 40, 'no tools and resources list_changed from memosd');
    check(refreshed.tools.some?.((t) => t.name === 'memory_add'), `tools after list_changed: ${refreshed.tools}`);
}
const schemas = new Map();
for (const tool of tools) {
    check(tool.outputSchema, `${tool.name} has no outputSchema`);
    schemas.set(tool.name, {
        input: validatorFor(tool.inputSchema, `${tool.name}'s inputSchema`),
        output: validatorFor(tool.outputSchema, `${tool.name}'s outputSchema`),
    });
}

let checkedResults = 0;
async function call(name, args) {
    const schema = schemas.get(name);
    check(schema, `tools/list has no ${name}`);
    schema.input(args, `the arguments of ${name}`);
    // callTool itself validates structuredContent against the listed outputSchema (with the SDK's Ajv).
    const result = await client.callTool({ name, arguments: args });
    const text = result.content?.map((c) => c.text).join(' ');
    check(!result.isError, `${name} failed: ${text}`);
    check(result.structuredContent, `${name} returned no structuredContent`);
    schema.output(result.structuredContent, `the result of ${name}`);
    check(isDeepStrictEqual(JSON.parse(text), result.structuredContent), `${name}: text and structured differ`);
    checkedResults += 1;
    return result.structuredContent;
}

const where = options.transport;
const { home_cube: home } = await call('cube_list', {});
const added = await call('memory_add', {
    content: `The user of the ${where} host prefers tabs over spaces`,
    kind: 'preference',
    tags: ['ts-compat'],
});
await call('memory_add', { content: `The ${where} host's build runs on Node 20`, tags: ['ts-compat'] });
check((await call('memory_get', { id: added.id })).content.includes('tabs over spaces'), 'memory_get content');
const found = await call('memory_search', { query: 'tabs over spaces', k: 3 });
check(found.results.some((hit) => hit.id === added.id), `memory_search: ${JSON.stringify(found)}`);
const listed = await call('memory_list', { tags: ['ts-compat'] });
check(listed.memories.length === 2, `memory_list: ${JSON.stringify(listed)}`);
await call('cube_members', { cube: home });
const task = await call('task_handoff', {
    to_agent: options.peer,
    title: 'Set up the editor',
    notes: 'Use what the user prefers for indentation',
});
await call('task_list', { role: 'from' });
await call('context_get', { task_id: task.id });

const { resources } = await client.listResources();
check(resources.some((r) => r.uri === 'memos://cubes'), `resources: ${JSON.stringify(resources)}`);
const { resourceTemplates } = await client.listResourceTemplates();
check(
    resourceTemplates.some((t) => t.uriTemplate === 'memos://memories/{id}'),
    `templates: ${JSON.stringify(resourceTemplates)}`,
);
const uri = `memos://memories/${added.id}`;
const read = await client.readResource({ uri });
check(JSON.parse(read.contents[0].text).id === added.id, `read ${uri}: ${JSON.stringify(read)}`);

// Subscribe, then change the memory until the update arrives (through the bridge the subscription
// reaches the daemon in the background, so the first change may come before it does).
await client.subscribeResource({ uri });
const deadline = Date.now() + 20_000;
for (let n = 1; !updated.includes(uri); n++) {
    check(Date.now() < deadline, `no notifications/resources/updated for ${uri} within 20 s`);
    await call('memory_update', { id: added.id, content: `The user of the ${where} host prefers tabs (${n})` });
    for (let i = 0; i < 10 && !updated.includes(uri); i++) await new Promise((r) => setTimeout(r, 50));
}
await client.unsubscribeResource({ uri });
await client.close();

const listChanged = Object.keys(refreshed).sort();
const summary = { transport: where, server, tools: tools.length, checkedResults, updated: uri, listChanged };
console.log(JSON.stringify(summary));
