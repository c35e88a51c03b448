package config

import (
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/contactsync/contactsync/connector"
)

var (
	configType     = reflect.TypeOf(Config{})
	sourceSpecType = reflect.TypeOf(SourceSpec{})
	sinkSpecType   = reflect.TypeOf(SinkSpec{})
)

// checkKeys walks the YAML tree against the Go types it decodes into and
// reports every unknown key with its path. yaml.v3's KnownFields stops at
// the first one and does not reach into nodes decoded by UnmarshalYAML, so
// the walk is done here, once, for the whole file.
func checkKeys(n *yaml.Node, t reflect.Type, v *connector.Validator) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case sourceSpecType:
		checkKind(n, v, "source", kinds(Sources), func(k string) reflect.Type { return typeOf(Sources, k) })
		return
	case sinkSpecType:
		checkKind(n, v, "sink", kinds(Sinks), func(k string) reflect.Type { return typeOf(Sinks, k) })
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // a type error, reported by the decoder with its line
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			ft, ok := fields[key]
			if !ok {
				v.Errorf(key, "unknown key (line %d)", n.Content[i].Line)
				continue
			}
			checkKeys(n.Content[i+1], ft, v.At(key))
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, item := range n.Content {
			checkKeys(item, t.Elem(), v.Index(i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkKeys(n.Content[i+1], t.Elem(), v.At(n.Content[i].Value))
		}
	}
}

func checkKind(n *yaml.Node, v *connector.Validator, what string, known []string, typ func(string) reflect.Type) {
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		v.Errorf("", "must hold exactly one of: %s", strings.Join(known, ", "))
		return
	}
	if len(n.Content) > 2 {
		var got []string
		for i := 0; i < len(n.Content); i += 2 {
			got = append(got, n.Content[i].Value)
		}
		v.Errorf("", "must hold exactly one of %s, not %s", strings.Join(known, ", "), strings.Join(got, " and "))
		return
	}
	kind := n.Content[0].Value
	t := typ(kind)
	if t == nil {
		v.Errorf(kind, "unknown %s kind (want one of: %s)", what, strings.Join(known, ", "))
		return
	}
	checkKeys(n.Content[1], t, v.At(kind))
}

func kinds[T any](m map[string]func() T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func typeOf[T any](m map[string]func() T, kind string) reflect.Type {
	mk, ok := m[kind]
	if !ok {
		return nil
	}
	return reflect.TypeOf(mk())
}

// yamlFields maps a struct's YAML keys to their types, following inline
// fields.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			for k, v := range yamlFields(ft) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}
