-- wrk script: replays pre-signed webhook requests, one line each: "<timestamp>\t<signature>\t<body>".
-- Use one wrk thread (-t1): every thread would load and replay the same list.
local requests = {}
local index = 0

function init(args)
  for line in io.lines(args[1]) do
    local timestamp, signature, body = line:match("^(%d+)\t([^\t]+)\t(.*)$")
    requests[#requests + 1] = wrk.format("POST", nil, {
      ["content-type"] = "application/json; charset=utf-8",
      ["x-zm-request-timestamp"] = timestamp,
      ["x-zm-signature"] = signature,
    }, body)
  end
end

function request()
  index = index + 1
  if index > #requests then
    index = 1
  end
  return requests[index]
end
