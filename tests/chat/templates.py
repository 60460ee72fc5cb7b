"""Chat templates in the styles of the families' own (written for these tests): ChatML
(SmolLM2, Qwen2.5), LLaMA-3 headers with a dated system block, Gemma turns with the "model"
role and alternation enforced, and one that exercises the environment itself (block tags on
their own indented lines, loop controls, namespace, dict, tojson, generation blocks), and a
Qwen3-style one that splits reasoning out of earlier replies (string methods, reversed loops)."""

CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

LLAMA3 = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + strftime_now("%d %b %Y") + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

GEMMA = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {{ message['content'] | trim }}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\n' }}
{%- endif -%}
"""

ENVIRONMENT = """{% set ns = namespace(count=0, last=none) %}
  {% for message in messages %}
    {% if message['role'] == 'tool' %}
      {% continue %}
    {% endif %}
    {% set ns.count = ns.count + 1 %}
    [{{ ns.count }}] {{ message['role'] }}:
    {% if message['role'] == 'assistant' %}
{% generation %}{{ message['content'] }}{% endgeneration %}
    {% else %}
{{ message['content'] }}
    {% endif %}
    {% if ns.count >= 9 %}{% break %}{% endif %}
  {% endfor %}
meta={{ dict(n=ns.count, roles=messages | map(attribute='role') | list) | tojson }}
first={{ messages[0] | tojson(indent=1, sort_keys=true) }}
{% if add_generation_prompt %}
[next] assistant:
{% endif %}"""

THINKING = """{%- set ns = namespace(last_user=messages | length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages | length - 1) - loop.index0 %}
    {%- if message.role == 'user' and ns.last_user == messages | length - 1 %}
        {%- set ns.last_user = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- set content = message.content if message.content is string else '' %}
    {%- if message.role == 'assistant' %}
        {%- set reasoning = message.reasoning_content | default('') %}
        {%- if '</think>' in content %}
            {%- set reasoning = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_user and reasoning %}
            {{- '<|im_start|>assistant\n<think>\n' + reasoning.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') + '<|im_end|>\n' }}
        {%- else %}
            {{- '<|im_start|>assistant\n' + content + '<|im_end|>\n' }}
        {%- endif %}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}
"""

ALL = {"chatml": CHATML, "llama3": LLAMA3, "gemma": GEMMA, "environment": ENVIRONMENT,
       "thinking": THINKING}
VARIABLES = {"chatml": {"eos_token": "<|im_end|>"},
             "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
             "gemma": {"bos_token": "<bos>", "eos_token": "<eos>"},
             "environment": {}, "thinking": {"enable_thinking": False}}
