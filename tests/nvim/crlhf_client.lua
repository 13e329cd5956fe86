-- Neovim's built-in LSP client (0.7+) against crlhf-lsp, headless:
--   nvim --headless --clean -c 'luafile tests/nvim/crlhf_client.lua'
-- Environment: CRLHF_PYTHON (interpreter with crlhf installed), CRLHF_SETTINGS (JSON
-- initializationOptions), CRLHF_NVIM_OUT (where the results go, as JSON).
-- Steps: attach to a Python buffer, request an inline completion, insert it, run
-- crlhf.accepted, ask for code actions on its first line, run the 👍 one (crlhf.rate).

local out_path = os.getenv("CRLHF_NVIM_OUT")
local results = { steps = {} }

local function finish()
  local f = io.open(out_path, "w")
  f:write(vim.fn.json_encode(results))
  f:close()
  vim.cmd("qall!")
end

local function request(client, buf, method, params, timeout)
  local done, reply = false, nil
  client.request(method, params, function(err, result)
    reply = { err = err, result = result }
    done = true
  end, buf)
  if not vim.wait(timeout or 60000, function() return done end, 50) then
    error(method .. " got no reply")
  end
  if reply.err then
    error(method .. " failed: " .. vim.inspect(reply.err))
  end
  table.insert(results.steps, method)
  return reply.result
end

local function run()
  local capabilities = vim.lsp.protocol.make_client_capabilities()
  capabilities.textDocument.inlineCompletion = {}
  local client_id = vim.lsp.start_client({
    name = "crlhf",
    cmd = { os.getenv("CRLHF_PYTHON"), "-m", "crlhf_lsp", "--stdio" },
    root_dir = vim.fn.getcwd(),
    init_options = vim.fn.json_decode(os.getenv("CRLHF_SETTINGS")),
    capabilities = capabilities,
    flags = { debounce_text_changes = 0 },
  })
  local buf = vim.api.nvim_create_buf(true, false)
  vim.api.nvim_buf_set_name(buf, vim.fn.getcwd() .. "/nvim_demo.py")
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { "import os", "", "", "def mean(values):", "    " })
  vim.api.nvim_buf_set_option(buf, "filetype", "python")
  vim.lsp.buf_attach_client(buf, client_id)
  local client
  vim.wait(120000, function()
    client = vim.lsp.get_client_by_id(client_id)
    return client ~= nil and client.initialized
  end, 50)
  if not (client and client.initialized) then error("crlhf-lsp did not initialize") end
  results.inline_provider = client.server_capabilities ~= nil
    and client.server_capabilities.inlineCompletionProvider ~= nil
  local uri = vim.uri_from_bufnr(buf)

  local reply = request(client, buf, "textDocument/inlineCompletion", {
    textDocument = { uri = uri },
    position = { line = 4, character = 4 },
    context = { triggerKind = 1 },
  }, 300000)
  local item = reply.items[1]
  results.insert_text = item.insertText
  results.completion_id = item.command.arguments[1]

  -- Insert the suggestion as a client would, then tell the server it was accepted.
  local lines = vim.split("    " .. item.insertText, "\n", true)
  vim.api.nvim_buf_set_lines(buf, 4, 5, false, lines)
  request(client, buf, "workspace/executeCommand", item.command)

  local actions = request(client, buf, "textDocument/codeAction", {
    textDocument = { uri = uri },
    range = { start = { line = 4, character = 0 }, ["end"] = { line = 4, character = 0 } },
    context = { diagnostics = {} },
  })
  results.titles = {}
  local up
  for _, action in ipairs(actions or {}) do
    table.insert(results.titles, action.title)
    if action.title:find("👍", 1, true) then up = action end
  end
  if up == nil then error("no 👍 code action on the accepted line") end
  local rated = request(client, buf, "workspace/executeCommand", up.command)
  results.rated = rated.rated
  -- The rating leaves through the outbox: wait until the store has taken it.
  vim.wait(60000, function()
    results.status = request(client, buf, "crlhf/status", vim.empty_dict())
    return results.status.outboxPending == 0
  end, 200)
  vim.lsp.stop_client(client_id)
end

local ok, err = pcall(run)
results.ok = ok
if not ok then results.error = tostring(err) end
finish()
